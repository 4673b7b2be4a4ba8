//! The nodes' control connection: one TCP stream from each node to node 0, carrying
//! newline-delimited JSON [`Message`]s. It admits the nodes (options compared, node 0's tokenizer
//! handed out), carries heartbeats both ways so that a lost node is noticed within
//! `--peer-timeout`, and the checkpoint digests. The gradients go over a second connection
//! (`exchange`), opened with a [`Message::Gradients`] line.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::digest::NodeDigest;

/// One control message.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// A node asks to join: its rank, the node count it was started with, and its resolved
    /// options (the run directory left out: it may be mounted elsewhere on each machine).
    Hello { node: usize, nodes: usize, options: serde_json::Value },
    /// Node 0 admits a node, handing it the run's tokenizer (`tokenizer.json` text).
    Welcome { tokenizer: String },
    /// The first line of a node's second connection to node 0, which then carries its gradients
    /// (`exchange`).
    Gradients { node: usize },
    /// Node 0 refuses the run (every node gets it, and every node exits with status 2).
    Refused { reason: String },
    /// Sent every quarter of `--peer-timeout` by both ends.
    Heartbeat,
    /// A node's weights and optimizer state after a checkpointed step.
    Digest(NodeDigest),
    /// A node finished training; its connection closing is no longer a loss.
    Finished,
    /// Node 0 tells the others that a node was lost (they stop).
    Lost { node: usize, reason: String },
}

/// The sending half of a control connection, shared by the heartbeat thread and the trainer.
#[derive(Clone)]
pub struct Sender(Arc<Mutex<TcpStream>>);

/// Writes one message line.
pub fn write_message(stream: &mut TcpStream, message: &Message) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).expect("control messages serialise");
    line.push(b'\n');
    stream.write_all(&line)?;
    stream.flush()
}

impl Sender {
    pub fn send(&self, message: &Message) -> std::io::Result<()> {
        write_message(&mut self.0.lock().expect("the control stream lock is never poisoned"), message)
    }

    /// Sends a heartbeat every `every` until the connection fails.
    pub fn beat(&self, every: Duration) {
        let sender = self.clone();
        std::thread::spawn(move || {
            while sender.send(&Message::Heartbeat).is_ok() {
                std::thread::sleep(every);
            }
        });
    }
}

/// The receiving half.
pub struct Receiver(BufReader<TcpStream>);

/// What a receive gave.
pub enum Received {
    Message(Message),
    /// The other end closed the connection.
    Closed,
    /// Nothing arrived within the read timeout, or the connection broke.
    Silent(std::io::Error),
}

impl Receiver {
    pub fn new(stream: TcpStream) -> Self {
        Self(BufReader::new(stream))
    }

    /// The buffered stream (a gradient connection after its first line), blocking again.
    pub fn into_inner(self) -> std::io::Result<BufReader<TcpStream>> {
        self.0.get_ref().set_read_timeout(None)?;
        Ok(self.0)
    }

    /// Waits at most `timeout` for the next message.
    pub fn receive(&mut self, timeout: Duration) -> Received {
        if let Err(e) = self.0.get_ref().set_read_timeout(Some(timeout.max(Duration::from_millis(1)))) {
            return Received::Silent(e);
        }
        let mut line = String::new();
        match self.0.read_line(&mut line) {
            Ok(0) => Received::Closed,
            Ok(_) => match serde_json::from_str(&line) {
                Ok(message) => Received::Message(message),
                Err(e) => Received::Silent(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not a control message: {e}"))),
            },
            Err(e) => Received::Silent(e),
        }
    }
}

/// Splits a connected stream into its two halves.
pub fn split(stream: TcpStream) -> std::io::Result<(Sender, Receiver)> {
    stream.set_nodelay(true)?;
    let reader = stream.try_clone()?;
    Ok((Sender(Arc::new(Mutex::new(stream))), Receiver::new(reader)))
}
