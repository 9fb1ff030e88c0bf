"""The trainer's failures: each has a reason (a CamelCase word the operator puts in the
TwinTrainingJob's status) and a message a person can act on."""


class TrainerError(Exception):
    """A failure the trainer explains: `reason` names its kind, the message says what to do."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def config_error(message: str) -> TrainerError:
    return TrainerError("InvalidConfig", message)
