//! Server-sent events read from an HTTP response, one event's data at a time. The stream is
//! parsed by `eventsource-stream` (the WHATWG grammar: `data:` lines joined, comments and the
//! other fields skipped, CR, LF or CRLF line ends, a leading BOM); around it, the whole body is
//! held to a byte limit, and a body that ends without a single event is refused as not an event
//! stream. The gateway's openai engine reads its upstream with it, and `twin chat` reads the
//! gateway.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};

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
    /// The body ended without an event: it is not an event stream.
    #[error("stream of {0} bytes holds no event: it is not an event stream")]
    NoEvent(usize),
}

type Events =
    Pin<Box<dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<SseError>>> + Send>>;

/// Reads the events of a response.
pub struct EventStream {
    events: Events,
    /// Bytes of the body read so far.
    read: Arc<AtomicUsize>,
    /// Whether an event with data has been read.
    seen: bool,
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
        let read = Arc::new(AtomicUsize::new(0));
        let counted = read.clone();
        let chunks = futures::stream::unfold(response, |mut response| async move {
            let chunk = response.chunk().await.transpose()?;
            Some((chunk, response))
        });
        let body = chunks.map(move |chunk| {
            let chunk = chunk.map_err(|e| SseError::Broken(innermost(&e)))?;
            if counted.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len() > limit {
                return Err(SseError::TooLarge(limit));
            }
            Ok(chunk)
        });
        Self { events: Box::pin(body.eventsource()), read, seen: false }
    }

    /// The next event's data (events without data are skipped); `None` once the body ended.
    pub async fn next(&mut self) -> Result<Option<String>, SseError> {
        loop {
            return match self.events.next().await {
                Some(Ok(event)) if event.data.is_empty() => continue,
                Some(Ok(event)) => {
                    self.seen = true;
                    Ok(Some(event.data))
                }
                Some(Err(EventStreamError::Transport(error))) => Err(error),
                Some(Err(EventStreamError::Utf8(_))) => Err(SseError::NotUtf8),
                // The grammar takes any line as a field: a parser error means an unfinished
                // line at the end of the body.
                Some(Err(EventStreamError::Parser(_))) => {
                    Err(SseError::NoEvent(self.read.load(Ordering::Relaxed)))
                }
                None if !self.seen && self.read.load(Ordering::Relaxed) > 0 => {
                    Err(SseError::NoEvent(self.read.load(Ordering::Relaxed)))
                }
                None => Ok(None),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(body: &'static str, limit: usize) -> EventStream {
        EventStream::new(reqwest::Response::from(http::Response::new(body)), limit)
    }

    async fn all(mut events: EventStream) -> Result<Vec<String>, SseError> {
        let mut read = Vec::new();
        while let Some(data) = events.next().await? {
            read.push(data);
        }
        Ok(read)
    }

    #[tokio::test]
    async fn an_events_data_lines_are_joined_and_other_fields_and_comments_skipped() {
        let body = ": keep-alive\n\nevent: x\nid: 1\ndata: a\ndata:b\n\ndata: c\r\n\r\ndata: [DONE]\n\n";
        assert_eq!(all(stream(body, 1 << 20)).await.unwrap(), ["a\nb", "c", "[DONE]"]);
    }

    #[tokio::test]
    async fn a_body_without_events_or_over_the_limit_is_refused() {
        assert_eq!(all(stream("<html>not an API</html>\n\n", 1 << 20)).await, Err(SseError::NoEvent(25)));
        assert_eq!(all(stream("data: a\n\ndata: b\n\n", 8)).await, Err(SseError::TooLarge(8)));
        assert_eq!(all(stream("", 8)).await, Ok(Vec::new()), "an empty body is an empty stream");
    }
}
