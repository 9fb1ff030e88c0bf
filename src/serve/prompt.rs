//! The prompt a twin answers: its system prompt in the author's voice, the retrieved passages
//! with their titles and URLs, and the conversation, fitted to the engine's context. When it
//! does not fit, the lowest-ranked passages go first, then the oldest turns; the system prompt
//! and the last user turn are never cut (a request they alone overflow is refused).

use super::api::{ApiError, Role, Turn};
use super::index::Passage;

/// The system prompt when none is configured.
pub fn default_system_prompt(author: &str) -> String {
    format!(
        "You are {author}'s twin: you write as {author} writes, in the first person, with {author}'s voice, \
         opinions and vocabulary. Ground your answers in the passages from {author}'s own writing given below, \
         and name the title or URL of a passage you draw on. If the passages do not cover the question, say so \
         in {author}'s voice rather than inventing facts."
    )
}

/// Counts tokens as the engine does.
pub trait TokenCounter {
    /// Tokens of a text.
    fn count(&self, text: &str) -> usize;
    /// Tokens the chat format adds per turn.
    fn per_turn(&self) -> usize;
}

/// A fitted prompt and what it kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// The turns to send: one system turn, then the conversation.
    pub turns: Vec<Turn>,
    /// How many of the passages (the best ones, in order) made it in.
    pub passages_used: usize,
    /// How many turns of the conversation were left out, oldest first.
    pub turns_dropped: usize,
    /// Tokens of the prompt, as counted.
    pub prompt_tokens: usize,
}

/// Builds the prompt within `budget` tokens (the context less the room kept for the answer).
/// `conversation` is the request's turns; its system turns are joined to the twin's own system
/// prompt. `passages` are best first.
pub fn fit(
    system_prompt: &str,
    conversation: &[Turn],
    passages: &[&Passage],
    budget: usize,
    counter: &impl TokenCounter,
) -> Result<Fitted, ApiError> {
    let mut system = system_prompt.to_string();
    for turn in conversation.iter().filter(|t| t.role == Role::System) {
        if !turn.content.trim().is_empty() {
            system.push_str("\n\n");
            system.push_str(&turn.content);
        }
    }
    let dialogue: Vec<&Turn> = conversation.iter().filter(|t| t.role != Role::System).collect();
    let last_user =
        dialogue.iter().rposition(|t| t.role == Role::User).expect("validated: a user turn exists");
    // Turns after the last user turn (an assistant prefix) stay with it.
    let kept_tail = &dialogue[last_user..];
    let turn_cost = |turn: &Turn| counter.count(&turn.content) + counter.per_turn();
    let header = passages_header();
    let system_cost = counter.count(&system) + counter.per_turn();
    let mandatory = system_cost + kept_tail.iter().map(|t| turn_cost(t)).sum::<usize>();
    if mandatory > budget {
        return Err(ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::invalid(
                format!(
                    "the system prompt and the last user message take {mandatory} tokens; this twin's context leaves \
                     {budget} for the prompt (after the room kept for the answer): shorten the message or lower max_tokens"
                ),
                "messages",
            )
        });
    }
    // The oldest turns go first when the history alone overflows; passages only take what is left.
    let mut history: Vec<&Turn> = dialogue[..last_user].to_vec();
    let mut used = mandatory + history.iter().map(|t| turn_cost(t)).sum::<usize>();
    let mut turns_dropped = 0;
    while used > budget && !history.is_empty() {
        used -= turn_cost(history.remove(0));
        turns_dropped += 1;
    }
    // A dropped turn would leave the history starting with an answer: drop that too.
    while history.first().is_some_and(|t| t.role == Role::Assistant) {
        used -= turn_cost(history.remove(0));
        turns_dropped += 1;
    }
    let mut block = String::new();
    let mut passages_used = 0;
    for (rank, passage) in passages.iter().enumerate() {
        let entry = passage_entry(rank + 1, passage);
        let cost = counter.count(&entry) + if passages_used == 0 { counter.count(&header) } else { 0 };
        if used + cost > budget {
            break;
        }
        used += cost;
        if passages_used == 0 {
            block.push_str(&header);
        }
        block.push_str(&entry);
        passages_used += 1;
    }
    let mut turns = Vec::with_capacity(history.len() + kept_tail.len() + 1);
    turns.push(Turn { role: Role::System, content: system + &block });
    turns.extend(history.into_iter().cloned());
    turns.extend(kept_tail.iter().map(|t| (*t).clone()));
    Ok(Fitted { turns, passages_used, turns_dropped, prompt_tokens: used })
}

fn passages_header() -> String {
    "\n\nPassages from your writing, most relevant first:\n".to_string()
}

fn passage_entry(number: usize, passage: &Passage) -> String {
    let mut entry = format!("\n[{number}]");
    if let Some(title) = &passage.title {
        entry.push_str(&format!(" \"{title}\""));
    }
    if let Some(url) = &passage.url {
        entry.push_str(&format!(" <{url}>"));
    }
    entry.push('\n');
    entry.push_str(passage.text.trim());
    entry.push('\n');
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per word, two per turn.
    struct Words;
    impl TokenCounter for Words {
        fn count(&self, text: &str) -> usize {
            text.split_whitespace().count()
        }
        fn per_turn(&self) -> usize {
            2
        }
    }

    fn turn(role: Role, content: &str) -> Turn {
        Turn { role, content: content.into() }
    }

    fn passage(text: &str) -> Passage {
        Passage {
            chunk_id: "c".into(),
            title: Some("Post".into()),
            url: Some("https://x/p".into()),
            text: text.into(),
        }
    }

    #[test]
    fn everything_fits_in_a_large_context() {
        let p = [passage("alpha beta"), passage("gamma")];
        let conversation = [
            turn(Role::System, "Be brief."),
            turn(Role::User, "hi"),
            turn(Role::Assistant, "hello"),
            turn(Role::User, "why?"),
        ];
        let fitted = fit("You are Paul.", &conversation, &[&p[0], &p[1]], 1000, &Words).unwrap();
        assert_eq!(fitted.passages_used, 2);
        assert_eq!(fitted.turns.len(), 4);
        assert!(fitted.turns[0].content.starts_with("You are Paul.\n\nBe brief.\n\nPassages"));
        assert!(fitted.turns[0].content.contains("[2] \"Post\" <https://x/p>\ngamma"));
        assert_eq!(fitted.turns[3].content, "why?");
        assert_eq!(
            fitted.prompt_tokens,
            Words.count(&fitted.turns.iter().map(|t| t.content.as_str()).collect::<Vec<_>>().join(" ")) + 8
        );
    }

    #[test]
    fn passages_go_before_turns_and_the_last_question_is_never_cut() {
        let p = [passage("one two three four five six"), passage("seven")];
        let conversation = [
            turn(Role::User, "old question here"),
            turn(Role::Assistant, "old answer here"),
            turn(Role::User, "new?"),
        ];
        // System 3+2, last turn 1+2 = 8; history 5+5 = 18 in all; passages need more.
        let fitted = fit("You are Paul.", &conversation, &[&p[0], &p[1]], 20, &Words).unwrap();
        assert_eq!((fitted.passages_used, fitted.turns_dropped, fitted.turns.len()), (0, 0, 4));
        // Too small for the history: both old turns go (an answer never starts the history).
        let fitted = fit("You are Paul.", &conversation, &[], 12, &Words).unwrap();
        assert_eq!((fitted.turns_dropped, fitted.turns.len()), (2, 2));
        let error = fit("You are Paul.", &conversation, &[], 7, &Words).unwrap_err();
        assert_eq!(error.code, Some("context_length_exceeded"));
    }
}
