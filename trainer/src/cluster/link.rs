//! Joining the nodes and watching them: node 0 ([`Listening::admit`]) and the others
//! ([`join`]) meet over the control connection; afterwards a monitor thread per connection reads
//! heartbeats, digests and `Finished`, and a node that goes silent for `--peer-timeout` or whose
//! connection closes before it finished stops the run on every node (exit status 1, naming it),
//! instead of leaving them blocked in an all-reduce that cannot complete.

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::NodeSetup;
use super::digest::{DigestBoard, NodeDigest};
use super::exchange::Exchange;
use super::wire::{self, Message, Received, Receiver, Sender};
use crate::exit::Failure;

/// What the stop message adds about the run (the step, the last checkpoint), set once training starts.
type Context = Box<dyn Fn() -> String + Send + Sync>;

/// A node of a joined cluster.
pub struct Cluster {
    pub rank: usize,
    pub nodes: usize,
    exchange: Mutex<Exchange>,
    peer_timeout: Duration,
    /// Node 0: a connection per other node (by rank); the others: the one to node 0.
    peers: Vec<(usize, Sender)>,
    /// Set when this node's training has ended: lost connections no longer stop anything.
    done: AtomicBool,
    /// Node 0: which nodes have sent `Finished`.
    finished: Mutex<Vec<bool>>,
    finished_changed: Condvar,
    board: OnceLock<DigestBoard>,
    context: OnceLock<Context>,
}

impl Cluster {
    fn new(setup: &NodeSetup, exchange: Exchange, peers: Vec<(usize, Sender)>) -> Arc<Self> {
        let mut finished = vec![false; setup.nodes];
        finished[setup.rank] = true;
        Arc::new(Self {
            rank: setup.rank,
            nodes: setup.nodes,
            exchange: Mutex::new(exchange),
            peer_timeout: setup.peer_timeout,
            peers,
            done: AtomicBool::new(false),
            finished: Mutex::new(finished),
            finished_changed: Condvar::new(),
            board: OnceLock::new(),
            context: OnceLock::new(),
        })
    }

    pub fn is_coordinator(&self) -> bool {
        self.rank == 0
    }

    /// The mean of every node's `values` (see [`Exchange`]); blocks until every node has sent
    /// its own. A node lost meanwhile stops the process through its monitor.
    pub fn exchange_mean(&self, values: Vec<f32>) -> std::io::Result<Vec<f32>> {
        self.exchange.lock().expect("one exchange at a time, never poisoned").mean(values, self.nodes)
    }

    /// What a stop message says about where the run stands (see [`Context`]).
    pub fn set_context(&self, context: impl Fn() -> String + Send + Sync + 'static) {
        let _ = self.context.set(Box::new(context));
    }

    /// Node 0: collects the digests into `path` (`nodes.jsonl`).
    pub fn open_board(&self, path: &Path, completed_steps: usize) -> std::io::Result<()> {
        let board = DigestBoard::open(path, self.nodes, completed_steps)?;
        let _ = self.board.set(board);
        Ok(())
    }

    /// This node's digest of a checkpointed step: onto node 0's board, sent there by the others.
    pub fn report(&self, digest: NodeDigest) {
        match self.board.get() {
            Some(board) => board.add(digest),
            None => {
                for (_, peer) in &self.peers {
                    let _ = peer.send(&Message::Digest(digest.clone()));
                }
            }
        }
    }

    /// This node's training ended. The others tell node 0 so; node 0 waits (at most
    /// `--peer-timeout`) until every node has, so that the last digests are in.
    pub fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        if !self.is_coordinator() {
            for (_, peer) in &self.peers {
                let _ = peer.send(&Message::Finished);
            }
            return;
        }
        let finished = self.finished.lock().expect("never poisoned");
        let (finished, _) =
            self.finished_changed.wait_timeout_while(finished, self.peer_timeout, |f| !f.iter().all(|&f| f)).expect("never poisoned");
        let missing: Vec<usize> = (0..self.nodes).filter(|&n| !finished[n]).collect();
        if !missing.is_empty() {
            eprintln!("warning: nodes {missing:?} did not report the end of their training within --peer-timeout");
        }
    }

    fn mark_finished(&self, node: usize) {
        self.finished.lock().expect("never poisoned")[node] = true;
        self.finished_changed.notify_all();
    }

    /// A node was lost: unless this node's training is over, node 0 tells the others, and this
    /// node stops (status 1). Checkpoints are written atomically, so the latest complete one
    /// stays loadable.
    fn lost(&self, node: usize, reason: String) {
        if self.done.load(Ordering::SeqCst) {
            self.mark_finished(node);
            return;
        }
        if self.is_coordinator() {
            for (rank, peer) in self.peers.iter().filter(|(rank, _)| *rank != node) {
                if let Err(e) = peer.send(&Message::Lost { node, reason: reason.clone() }) {
                    eprintln!("warning: cannot tell node {rank} that node {node} was lost: {e}");
                }
            }
        }
        let context = self.context.get().map_or_else(String::new, |c| c());
        eprintln!("error: lost node {node}: {reason}; the run stopped on node {}{context}", self.rank);
        std::process::exit(1);
    }

    /// Reads one connection until it ends; a silence or a close before `Finished` is a loss.
    fn watch(self: &Arc<Self>, node: usize, mut receiver: Receiver) {
        let cluster = Arc::clone(self);
        std::thread::spawn(move || {
            loop {
                match receiver.receive(cluster.peer_timeout) {
                    Received::Message(Message::Digest(digest)) => cluster.report(digest),
                    Received::Message(Message::Finished) => cluster.mark_finished(node),
                    Received::Message(Message::Lost { node: lost, reason }) => {
                        cluster.lost(lost, format!("{reason} (reported by node 0)"));
                    }
                    Received::Message(_) => {}
                    Received::Closed => {
                        let finished = cluster.finished.lock().expect("never poisoned")[node];
                        if !finished {
                            cluster.lost(node, "its connection closed (the process ended?)".to_owned());
                        }
                        return;
                    }
                    Received::Silent(e) => {
                        let finished = cluster.finished.lock().expect("never poisoned")[node];
                        if !finished {
                            cluster.lost(node, format!("no word from it for {} s ({e})", cluster.peer_timeout.as_secs()));
                        }
                        return;
                    }
                }
            }
        });
    }

    fn start_watching(self: &Arc<Self>, receivers: Vec<(usize, Receiver)>) {
        let every = self.peer_timeout / 4;
        for (_, sender) in &self.peers {
            sender.beat(every);
        }
        for (node, receiver) in receivers {
            self.watch(node, receiver);
        }
    }
}

/// The run's options as the nodes compare them: everything but the run directory, which each
/// machine may mount elsewhere.
pub fn comparable_options(options: &crate::options::TrainOptions) -> Value {
    let mut value = serde_json::to_value(options).expect("options serialise");
    if let Value::Object(map) = &mut value {
        map.remove("run_dir");
    }
    value
}

/// The options in which `theirs` differs from `ours`, as flags with both values.
fn differences(ours: &Value, theirs: &Value) -> Vec<String> {
    let (Value::Object(ours), Value::Object(theirs)) = (ours, theirs) else { return vec!["(not an options object)".to_owned()] };
    let mut names: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| ours.get(*name) != theirs.get(*name))
        .map(|name| {
            let show = |v: Option<&Value>| v.map_or("not given".to_owned(), Value::to_string);
            format!("--{} ({} on node 0, {} there)", name.replace('_', "-"), show(ours.get(name)), show(theirs.get(name)))
        })
        .collect()
}

/// Node 0, listening at `--coordinator` from the start of the run so that the others can connect
/// while it prepares its data and tokenizer.
pub struct Listening {
    setup: NodeSetup,
    listener: TcpListener,
    deadline: Instant,
}

impl Listening {
    pub fn bind(setup: &NodeSetup) -> anyhow::Result<Self> {
        let address = &setup.coordinator;
        let listener = TcpListener::bind((address.host.as_str(), address.port))
            .map_err(|e| anyhow::anyhow!("--coordinator {}:{}: cannot listen there: {e}", address.host, address.port))?;
        Ok(Self { setup: setup.clone(), listener, deadline: Instant::now() + setup.join_timeout })
    }

    /// Waits for every other node, checks that each runs the same options and admits them with
    /// `tokenizer` (the run's, as JSON); then takes each node's gradient connection.
    pub fn admit(self, options: &Value, tokenizer: String) -> Result<Arc<Cluster>, Failure> {
        let setup = &self.setup;
        let run = |e: std::io::Error| Failure::Run(anyhow::anyhow!("--coordinator: {e}"));
        self.listener.set_nonblocking(true).map_err(run)?;
        let mut joined: Vec<(usize, Sender, Receiver)> = Vec::new();
        while joined.len() + 1 < setup.nodes {
            let (stream, peer, hello) = self.next_message()?;
            let (sender, receiver) = wire::split(stream.into_inner().map_err(run)?.into_inner()).map_err(run)?;
            let Message::Hello { node, nodes, options: theirs } = hello else { continue };
            let changed = differences(options, &theirs);
            let refusal = if nodes != setup.nodes {
                Some(format!("node {node} ({peer}) was started with --nodes {nodes}, node 0 with {}", setup.nodes))
            } else if node == 0 || node >= setup.nodes || joined.iter().any(|j| j.0 == node) {
                Some(format!("{peer} asked to join as node {node}, which is node 0's, taken or out of range"))
            } else if !changed.is_empty() {
                Some(format!("node {node}'s options differ from node 0's: {}", changed.join(", ")))
            } else {
                None
            };
            if let Some(reason) = refusal {
                let refused = Message::Refused { reason: reason.clone() };
                for peer in joined.iter().map(|j| &j.1).chain([&sender]) {
                    let _ = peer.send(&refused);
                }
                return Err(Failure::Input(anyhow::anyhow!("{reason}; every node was refused")));
            }
            joined.push((node, sender, receiver));
        }
        let welcome = Message::Welcome { tokenizer };
        for (node, sender, _) in &joined {
            sender.send(&welcome).map_err(|e| Failure::Run(anyhow::anyhow!("node {node} left while joining: {e}")))?;
        }
        let mut gradients: Vec<(usize, BufReader<TcpStream>)> = Vec::new();
        while gradients.len() < joined.len() {
            let (stream, _, first) = self.next_message()?;
            if let Message::Gradients { node } = first
                && joined.iter().any(|j| j.0 == node)
                && !gradients.iter().any(|g| g.0 == node)
            {
                gradients.push((node, stream.into_inner().map_err(run)?));
            }
        }
        gradients.sort_by_key(|g| g.0);
        let mut peers = Vec::new();
        let mut receivers = Vec::new();
        for (node, sender, receiver) in joined {
            peers.push((node, sender));
            receivers.push((node, receiver));
        }
        let cluster = Cluster::new(setup, Exchange::Hub(gradients), peers);
        cluster.start_watching(receivers);
        Ok(cluster)
    }

    /// The next connection that sends a control message before the join deadline (anything
    /// else connecting is ignored), with the peer's address and that first message.
    fn next_message(&self) -> Result<(Receiver, String, Message), Failure> {
        let setup = &self.setup;
        let run = |e: std::io::Error| Failure::Run(anyhow::anyhow!("--coordinator: {e}"));
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                return Err(Failure::Run(anyhow::anyhow!(
                    "not every node joined within --join-timeout ({} s): are all {} started with --coordinator {}:{}?",
                    setup.join_timeout.as_secs(),
                    setup.nodes,
                    setup.coordinator.host,
                    setup.coordinator.port
                )));
            }
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(e) => return Err(run(e)),
            };
            stream.set_nonblocking(false).map_err(run)?;
            stream.set_nodelay(true).map_err(run)?;
            let peer = stream.peer_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string());
            let mut receiver = Receiver::new(stream);
            if let Received::Message(message) = receiver.receive(self.deadline.saturating_duration_since(now)) {
                return Ok((receiver, peer, message));
            }
        }
    }
}

/// Any node but 0: connects to the coordinator (retrying until `--join-timeout`), asks to join
/// with its options, and returns the cluster and node 0's tokenizer (JSON).
pub fn join(setup: &NodeSetup, options: &Value) -> Result<(Arc<Cluster>, String), Failure> {
    let deadline = Instant::now() + setup.join_timeout;
    let coordinator = format!("{}:{}", setup.coordinator.host, setup.coordinator.port);
    let stream = loop {
        let attempt = setup
            .coordinator
            .socket_addrs()
            .and_then(|addrs| addrs.first().copied().ok_or_else(|| std::io::Error::other("the host resolves to no address")))
            .and_then(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)));
        match attempt {
            Ok(stream) => break stream,
            Err(e) if Instant::now() >= deadline => {
                return Err(Failure::Run(anyhow::anyhow!(
                    "cannot reach the coordinator (node 0) at {coordinator} within --join-timeout ({} s): {e}",
                    setup.join_timeout.as_secs()
                )));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    let run = |e: std::io::Error| Failure::Run(anyhow::anyhow!("the coordinator at {coordinator}: {e}"));
    let gradient_address = stream.peer_addr().map_err(run)?;
    let (sender, mut receiver) = wire::split(stream).map_err(run)?;
    sender.send(&Message::Hello { node: setup.rank, nodes: setup.nodes, options: options.clone() }).map_err(run)?;
    let tokenizer = match receiver.receive(deadline.saturating_duration_since(Instant::now())) {
        Received::Message(Message::Welcome { tokenizer }) => tokenizer,
        Received::Message(Message::Refused { reason }) => return Err(Failure::Input(anyhow::anyhow!("node 0 refused the run: {reason}"))),
        Received::Message(other) => return Err(Failure::Run(anyhow::anyhow!("{coordinator} answered {other:?}: not a fira coordinator"))),
        Received::Closed => {
            return Err(Failure::Run(anyhow::anyhow!(
                "node 0 at {coordinator} closed the connection before admitting this node (see its output)"
            )));
        }
        Received::Silent(e) => return Err(Failure::Run(anyhow::anyhow!("node 0 at {coordinator} did not admit this node in time: {e}"))),
    };
    let mut gradients = TcpStream::connect_timeout(&gradient_address, Duration::from_secs(10)).map_err(run)?;
    gradients.set_nodelay(true).map_err(run)?;
    wire::write_message(&mut gradients, &Message::Gradients { node: setup.rank }).map_err(run)?;
    let cluster = Cluster::new(setup, Exchange::Spoke(BufReader::new(gradients)), vec![(0, sender)]);
    cluster.start_watching(vec![(0, receiver)]);
    Ok((cluster, tokenizer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_option_with_both_values() {
        let ours = serde_json::json!({"lr": 0.01, "seed": 42, "steps": 3});
        let theirs = serde_json::json!({"lr": 0.001, "seed": 42, "rank": 8});
        assert_eq!(
            differences(&ours, &theirs),
            [
                "--lr (0.01 on node 0, 0.001 there)".to_owned(),
                "--rank (not given on node 0, 8 there)".to_owned(),
                "--steps (3 on node 0, not given there)".to_owned()
            ]
        );
        assert!(differences(&ours, &ours).is_empty());
    }
}
