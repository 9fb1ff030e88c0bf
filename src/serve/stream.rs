//! A streamed answer: server-sent events (axum's `Sse`, with keep-alive comments while no token
//! comes) in OpenAI's chunk format, the sources in the first, the finish reason and (when asked
//! for) the usage in the last, then `[DONE]`; an error event and no `[DONE]` when the engine
//! fails midway; the prompt-log line when it ends, however it ends.

use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tracing::Instrument;

use super::answer::{Prepared, engine_error, generate_span, log_answer};
use super::api::{ChatChunk, ChunkChoice, Delta, Usage};
use super::engine::{EngineError, FinishReason, Piece};
use super::gateway::{Gateway, InFlight};
use super::metrics::RouteLabels;

/// A chunk of the answer `prepared` with no choice yet.
fn chunk<'a>(gateway: &'a Gateway, prepared: &'a Prepared) -> ChatChunk<'a> {
    ChatChunk {
        id: &prepared.id,
        object: "chat.completion.chunk",
        created: prepared.created,
        model: &gateway.name,
        choices: Vec::new(),
        usage: None,
        sources: None,
        lineage: None,
    }
}

/// One event of a streamed answer, with its one choice.
fn chunk_event(
    gateway: &Gateway,
    prepared: &Prepared,
    delta: Delta,
    finish_reason: Option<&str>,
    usage: Option<Option<Usage>>,
    first: bool,
) -> Event {
    event(&ChatChunk {
        choices: vec![ChunkChoice { index: 0, delta, finish_reason }],
        usage,
        sources: first.then_some(prepared.sources.as_slice()),
        lineage: first.then_some(&prepared.lineage),
        ..chunk(gateway, prepared)
    })
}

fn event(chunk: &impl serde::Serialize) -> Event {
    Event::default().json_data(chunk).expect("a chunk serialises")
}

pub(super) async fn stream_answer(
    gateway: Arc<Gateway>,
    mut prepared: Prepared,
    include_usage: bool,
    permit: InFlight,
) -> Response {
    let prompt = std::mem::take(&mut prepared.prompt);
    let generate = generate_span(&prepared);
    let pieces = match prepared.engine.stream(prompt).instrument(generate.clone()).await {
        Ok(pieces) => pieces,
        Err(error) => {
            gateway.metrics.error(error.kind());
            log_answer(&gateway, &prepared, "", "error", Some(error.to_string()), Usage::default());
            return engine_error(&error).into_response();
        }
    };
    let delta = Delta { role: Some("assistant"), content: Some("") };
    let first = chunk_event(&gateway, &prepared, delta, None, include_usage.then_some(None), true);
    let gateway_for_stream = gateway.clone();
    let events = answer_events(gateway_for_stream, prepared, pieces, include_usage, permit, first, generate);
    let keep_alive = KeepAlive::new().interval(gateway.keep_alive);
    // nginx (and ingresses built on it) would otherwise buffer the answer.
    ([("x-accel-buffering", "no")], Sse::new(events).keep_alive(keep_alive)).into_response()
}

/// The events of a streamed answer: the first (with the sources), one per piece, the last with
/// the finish reason, the usage chunk when asked for, then `[DONE]`; or an error event when the
/// engine fails mid-answer (and no `[DONE]`, so that clients see the answer is incomplete).
fn answer_events(
    gateway: Arc<Gateway>,
    prepared: Prepared,
    pieces: super::engine::PieceStream,
    include_usage: bool,
    permit: InFlight,
    first: Event,
    generate: tracing::Span,
) -> impl futures::Stream<Item = Result<Event, std::convert::Infallible>> + Send {
    struct State {
        gateway: Arc<Gateway>,
        prepared: Prepared,
        pieces: Option<super::engine::PieceStream>,
        answer: String,
        first_token_seen: bool,
        include_usage: bool,
        generate: tracing::Span,
        _permit: InFlight,
    }
    // A client that hangs up mid-answer drops the stream: the engine stops (its receiver is
    // gone), and the answer so far is logged as cut short.
    impl Drop for State {
        fn drop(&mut self) {
            if self.pieces.take().is_some() {
                self.gateway.metrics.error("client_disconnected");
                let usage = Usage::new(
                    self.prepared.prompt_tokens as u32,
                    self.prepared.engine.count_tokens(&self.answer) as u32,
                );
                let error = Some("the client closed the connection mid-answer".to_string());
                finish(&self.gateway, &self.prepared, &self.answer, FinishReason::Stop, error, usage);
            }
        }
    }
    let state = State {
        gateway,
        prepared,
        pieces: Some(pieces),
        answer: String::new(),
        first_token_seen: false,
        include_usage,
        generate,
        _permit: permit,
    };
    let rest = futures::stream::unfold(state, |mut state| async move {
        let pieces = state.pieces.as_mut()?;
        let next = pieces.next().await;
        let gateway = state.gateway.clone();
        let usage_field = state.include_usage.then_some(None);
        let prepared = &state.prepared;
        let make = |delta: Delta, finish: Option<&str>| {
            chunk_event(&gateway, prepared, delta, finish, usage_field, false)
        };
        match next {
            Some(Ok(Piece::Text(text))) => {
                let events = vec![make(Delta { role: None, content: Some(&text) }, None)];
                if !state.first_token_seen {
                    state.first_token_seen = true;
                    let elapsed = state.prepared.started.elapsed();
                    state.prepared.latency.first_token = elapsed.as_secs_f64() * 1e3;
                    gateway.metrics.time_to_first_token.observe(elapsed.as_secs_f64());
                }
                state.answer.push_str(&text);
                Some((events, state))
            }
            Some(Ok(Piece::Done { finish_reason, usage })) => {
                let usage = usage.unwrap_or_else(|| {
                    Usage::new(
                        state.prepared.prompt_tokens as u32,
                        state.prepared.engine.count_tokens(&state.answer) as u32,
                    )
                });
                let mut events =
                    vec![make(Delta { role: None, content: None }, Some(finish_reason.as_str()))];
                if state.include_usage {
                    events.push(event(&ChatChunk {
                        choices: Vec::new(),
                        usage: Some(Some(usage)),
                        ..chunk(&gateway, &state.prepared)
                    }));
                }
                events.push(Event::default().data("[DONE]"));
                state.generate.record("prompt_tokens", i64::from(usage.prompt_tokens));
                state.generate.record("completion_tokens", i64::from(usage.completion_tokens));
                finish(&gateway, &state.prepared, &state.answer, finish_reason, None, usage);
                state.pieces = None;
                Some((events, state))
            }
            Some(Err(error)) => {
                gateway.metrics.error(error.kind());
                let api_error = engine_error(&error);
                let events = vec![event(&api_error.body())];
                let usage = Usage::new(
                    state.prepared.prompt_tokens as u32,
                    state.prepared.engine.count_tokens(&state.answer) as u32,
                );
                finish(
                    &gateway,
                    &state.prepared,
                    &state.answer,
                    FinishReason::Stop,
                    Some(error.to_string()),
                    usage,
                );
                state.pieces = None;
                Some((events, state))
            }
            None => {
                // The engine's stream ended without its last piece: say so as an error event.
                let error = EngineError::Failed("the engine ended the answer without finishing it".into());
                gateway.metrics.error(error.kind());
                let events = vec![event(&engine_error(&error).body())];
                state.pieces = None;
                Some((events, state))
            }
        }
    });
    let rest = rest.flat_map(|events| futures::stream::iter(events.into_iter().map(Ok)));
    futures::stream::iter([Ok(first)]).chain(rest)
}

fn finish(
    gateway: &Gateway,
    prepared: &Prepared,
    answer: &str,
    reason: FinishReason,
    error: Option<String>,
    usage: Usage,
) {
    gateway
        .metrics
        .duration
        .get_or_create(&RouteLabels { route: "/v1/chat/completions".into() })
        .observe(prepared.started.elapsed().as_secs_f64());
    let reason = if error.is_some() { "error" } else { reason.as_str() };
    log_answer(gateway, prepared, answer, reason, error, usage);
}
