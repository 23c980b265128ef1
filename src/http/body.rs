//! A request body as a blocking [`Read`] for the engine, with backpressure and a limit.
//!
//! An async pump moves body chunks into a bounded channel; the engine's reader thread
//! takes them out. When the engine is slow, the channel fills, the pump stops polling the
//! body, and the socket's flow control pushes back on the client. A body over the limit,
//! a client that goes away, the server shutting down, or the upload's job being
//! cancelled makes the reader fail, so no backup is recorded.

use std::io::{self, Read};

use axum::body::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use std::sync::Arc;
use std::time::Duration;

use crate::repo::Progress;
use crate::service::tasks::TaskSet;

/// Body chunks buffered between the socket and the engine.
const QUEUE_CHUNKS: usize = 64;

/// The body exceeded the configured limit.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// The client went away or sent a malformed body.
#[derive(Debug, thiserror::Error)]
#[error("request body could not be read: {0}")]
pub struct BodyBroken(pub String);

/// The server began shutting down while the body was being received.
#[derive(Debug, thiserror::Error)]
#[error("the server is shutting down; the upload was not recorded")]
pub struct BodyStopped;

/// The upload's job was cancelled while its body was being received.
#[derive(Debug, thiserror::Error)]
#[error("the upload was cancelled; nothing was recorded")]
pub struct BodyCancelled;

/// How often a pump waiting for the client looks whether its upload was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// Resolves once `progress` is cancelled; never without one.
async fn cancelled(progress: Option<Arc<Progress>>) {
    match progress {
        Some(progress) => {
            while !progress.is_cancelled() {
                tokio::time::sleep(CANCEL_POLL).await;
            }
        }
        None => std::future::pending().await,
    }
}

/// The engine side: a blocking reader over the channel.
pub struct BodyReader {
    receiver: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

/// The HTTP side: feeds the channel.
pub struct BodyPump {
    sender: mpsc::Sender<io::Result<Bytes>>,
    limit: u64,
    received: u64,
    /// Its shutdown ends the body with [`BodyStopped`].
    stop: TaskSet,
    /// Its cancellation ends the body with [`BodyCancelled`], even while the client
    /// sends nothing (the engine then waits in a read and never looks at it).
    cancel: Option<Arc<Progress>>,
}

/// A connected pump and reader. Shutdown of `tasks` (the server's) ends the body with
/// [`BodyStopped`]: the ingest reading it fails and records nothing, so a shutdown never
/// waits for a long upload to finish.
pub fn channel(limit: u64, tasks: &TaskSet) -> (BodyPump, BodyReader) {
    let (sender, receiver) = mpsc::channel(QUEUE_CHUNKS);
    (
        BodyPump {
            sender,
            limit,
            received: 0,
            stop: tasks.clone(),
            cancel: None,
        },
        BodyReader {
            receiver,
            current: Bytes::new(),
        },
    )
}

impl BodyPump {
    /// Ends the body when `progress` (the upload's job) is cancelled.
    pub fn cancelled_by(mut self, progress: Arc<Progress>) -> BodyPump {
        self.cancel = Some(progress);
        self
    }

    async fn fail_cancelled(&mut self) {
        let _ = self.sender.send(Err(io::Error::other(BodyCancelled))).await;
    }

    async fn fail_stopping(&mut self) {
        let _ = self.sender.send(Err(io::Error::other(BodyStopped))).await;
    }

    /// Sends one chunk; `false` once the reader is gone, the limit was passed or the
    /// server is shutting down.
    pub async fn send(&mut self, chunk: Bytes) -> bool {
        self.received += chunk.len() as u64;
        if self.received > self.limit {
            let _ = self
                .sender
                .send(Err(io::Error::other(BodyTooLarge { limit: self.limit })))
                .await;
            return false;
        }
        if self.stop.is_cancelled() {
            self.fail_stopping().await;
            return false;
        }
        if self.cancel.as_ref().is_some_and(|p| p.is_cancelled()) {
            self.fail_cancelled().await;
            return false;
        }
        let sent = tokio::select! {
            sent = self.sender.send(Ok(chunk)) => Some(sent.is_ok()),
            _ = self.stop.cancelled() => None,
        };
        match sent {
            Some(sent) => sent,
            None => {
                self.fail_stopping().await;
                false
            }
        }
    }

    /// Reports a broken body to the reader.
    pub async fn fail(&mut self, reason: String) {
        let _ = self
            .sender
            .send(Err(io::Error::other(BodyBroken(reason))))
            .await;
    }

    /// Forwards a whole stream of chunks; returns the bytes received.
    pub async fn pump<S, E>(mut self, mut stream: S) -> u64
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = self.stop.cancelled() => {
                    self.fail_stopping().await;
                    break;
                }
                _ = cancelled(self.cancel.clone()) => {
                    self.fail_cancelled().await;
                    break;
                }
            };
            let Some(item) = next else { break };
            match item {
                Ok(chunk) => {
                    if !self.send(chunk).await {
                        break;
                    }
                }
                Err(error) => {
                    self.fail(error.to_string()).await;
                    break;
                }
            }
        }
        self.received
    }

    pub fn received(&self) -> u64 {
        self.received
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(error)) => return Err(error),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}
