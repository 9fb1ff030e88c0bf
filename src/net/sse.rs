//! Server-sent events read from an HTTP response, one event at a time: its `data:` lines joined,
//! comments and the other fields skipped, the whole stream held to a byte limit. The gateway's
//! openai engine reads its upstream with it, and `twin chat` reads the gateway.

/// Why a stream could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// The connection failed mid-stream (the innermost cause).
    #[error("stream broke off: {0}")]
    Broken(String),
    /// The stream is larger than the limit.
    #[error("stream is over {0} bytes")]
    TooLarge(usize),
    /// An event is not UTF-8.
    #[error("stream is not UTF-8")]
    NotUtf8,
    /// A line that is no event field: the body is not an event stream.
    #[error("stream holds a line that is not an event: {0:?}")]
    NotAnEvent(String),
}

/// Reads the events of a response.
pub struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    read: usize,
    limit: usize,
}

/// The innermost cause of an error: what actually went wrong (a reset connection), not the
/// wrappers' "error decoding response body".
pub fn innermost(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        message = inner.to_string();
        source = inner.source();
    }
    message
}

/// At most 200 characters of `text`, for error messages.
pub fn truncate(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

impl EventStream {
    /// The events of `response`, whose body may be at most `limit` bytes.
    pub fn new(response: reqwest::Response, limit: usize) -> Self {
        Self { response, buffer: Vec::new(), read: 0, limit }
    }

    /// The next event's data (events without data are skipped); `None` once the body ended.
    pub async fn next(&mut self) -> Result<Option<String>, SseError> {
        loop {
            if let Some((content, whole)) = event_end(&self.buffer) {
                let event: Vec<u8> = self.buffer.drain(..whole).collect();
                match event_data(&event[..content])? {
                    Some(data) => return Ok(Some(data)),
                    None => continue,
                }
            }
            let chunk = self.response.chunk().await.map_err(|e| SseError::Broken(innermost(&e)))?;
            let Some(chunk) = chunk else { return Ok(None) };
            self.read += chunk.len();
            if self.read > self.limit {
                return Err(SseError::TooLarge(self.limit));
            }
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

/// The data of one event, `None` when it has none (a comment, a keep-alive).
fn event_data(event: &[u8]) -> Result<Option<String>, SseError> {
    let text = std::str::from_utf8(event).map_err(|_| SseError::NotUtf8)?;
    let mut data: Option<String> = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => data = Some(value.to_string()),
            }
        } else if !(line.is_empty()
            || line.starts_with(':')
            || line.starts_with("event:")
            || line.starts_with("id:")
            || line.starts_with("retry:"))
        {
            return Err(SseError::NotAnEvent(truncate(line).to_string()));
        }
    }
    Ok(data.filter(|d| !d.is_empty()))
}

/// Where the first complete event ends: (end of its content, end including the blank line).
fn event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_the_first_blank_line_of_either_kind() {
        assert_eq!(event_end(b"data: a\n\ndata: b\n\n"), Some((7, 9)));
        assert_eq!(event_end(b"data: a\r\n\r\n"), Some((7, 11)));
        assert_eq!(event_end(b"data: a\n"), None);
    }

    #[test]
    fn an_events_data_lines_are_joined_and_other_fields_skipped() {
        assert_eq!(event_data(b"event: x\nid: 1\ndata: a\ndata:b").unwrap(), Some("a\nb".into()));
        assert_eq!(event_data(b": keep-alive").unwrap(), None);
        assert_eq!(event_data(b"<html>").unwrap_err(), SseError::NotAnEvent("<html>".into()));
    }
}
