//! Data-parallel training across machines (`fira train --nodes N`): one `fira train` process
//! per node, each with its share of every step's rows, their gradients averaged ([`exchange`])
//! before the global norm, clipping and the optimizer, so that every node takes the step one
//! process would take on all the rows and holds the same weights and optimizer state (shown by
//! the digests in node 0's `nodes.jsonl`).
//!
//! Node 0 coordinates: it listens at `--coordinator` for the others' control and gradient
//! connections ([`wire`]), compares their options with its own, hands out its tokenizer, and
//! writes the run directory (metrics, checkpoints, export). Heartbeats both ways bound how long a
//! lost node goes unnoticed ([`link`]).

pub mod digest;
mod exchange;
mod gradients;
mod link;
mod wire;

use std::net::ToSocketAddrs;
use std::time::Duration;

use clap::Args;

pub use gradients::NodeGradients;
pub use link::{Cluster, Listening, comparable_options, join};

/// `--peer-timeout` when not given.
pub const DEFAULT_PEER_TIMEOUT_S: u64 = 30;
/// `--join-timeout` when not given.
pub const DEFAULT_JOIN_TIMEOUT_S: u64 = 300;

/// The flags of one node of a `--nodes` run: they differ between the nodes' invocations, so they
/// are not run options (not in `options.json`, not compared between nodes).
#[derive(Args, Clone, Debug, Default)]
pub struct NodeArgs {
    /// This node's index, 0 to --nodes − 1. Node 0 coordinates the run and writes its directory;
    /// the others read it when resuming (a shared directory, or a copy of node 0's).
    #[arg(long)]
    pub node_rank: Option<usize>,
    /// HOST:PORT of the coordinator: node 0 listens there, the other nodes connect to it (their
    /// control and gradient connections).
    #[arg(long)]
    pub coordinator: Option<String>,
    #[arg(long, help = format!("Seconds without word from a node (heartbeats go every quarter of it) before the others stop [default: {DEFAULT_PEER_TIMEOUT_S}]"))]
    pub peer_timeout: Option<u64>,
    #[arg(long, help = format!("Seconds the nodes wait for each other at the start [default: {DEFAULT_JOIN_TIMEOUT_S}]"))]
    pub join_timeout: Option<u64>,
}

/// A `HOST:PORT` flag, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    fn parse(flag: &str, text: &str) -> anyhow::Result<Self> {
        let (host, port) = text.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("{flag} {text}: expected HOST:PORT"))?;
        let port = port.parse().map_err(|_| anyhow::anyhow!("{flag} {text}: `{port}` is not a port number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        anyhow::ensure!(!host.is_empty(), "{flag} {text}: expected HOST:PORT");
        Ok(Self { host, port })
    }

    fn socket_addrs(&self) -> std::io::Result<Vec<std::net::SocketAddr>> {
        Ok((self.host.as_str(), self.port).to_socket_addrs()?.collect())
    }
}

/// A node's validated flags.
#[derive(Clone, Debug)]
pub struct NodeSetup {
    pub rank: usize,
    pub nodes: usize,
    pub coordinator: HostPort,
    pub peer_timeout: Duration,
    pub join_timeout: Duration,
}

impl NodeSetup {
    /// `None` for a single-node run (`--nodes 1`, where the node flags are refused).
    pub fn new(nodes: usize, args: &NodeArgs) -> anyhow::Result<Option<Self>> {
        if nodes == 1 {
            let given = crate::options::given_flags(&[
                ("--node-rank", args.node_rank.is_some()),
                ("--coordinator", args.coordinator.is_some()),
                ("--peer-timeout", args.peer_timeout.is_some()),
                ("--join-timeout", args.join_timeout.is_some()),
            ]);
            anyhow::ensure!(given.is_empty(), "{} apply with --nodes above 1 (this run has one node)", given.join(", "));
            return Ok(None);
        }
        let rank = args.node_rank.ok_or_else(|| anyhow::anyhow!("--nodes {nodes} needs --node-rank (0 to {})", nodes - 1))?;
        anyhow::ensure!(rank < nodes, "--node-rank {rank} is not below --nodes {nodes}");
        let coordinator =
            args.coordinator.as_deref().ok_or_else(|| anyhow::anyhow!("--nodes {nodes} needs --coordinator HOST:PORT (node 0's)"))?;
        let seconds = |flag: &str, given: Option<u64>, default: u64| -> anyhow::Result<Duration> {
            let value = given.unwrap_or(default);
            anyhow::ensure!(value > 0, "{flag} must be at least 1 second (got 0)");
            Ok(Duration::from_secs(value))
        };
        Ok(Some(Self {
            rank,
            nodes,
            coordinator: HostPort::parse("--coordinator", coordinator)?,
            peer_timeout: seconds("--peer-timeout", args.peer_timeout, DEFAULT_PEER_TIMEOUT_S)?,
            join_timeout: seconds("--join-timeout", args.join_timeout, DEFAULT_JOIN_TIMEOUT_S)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rank: Option<usize>, coordinator: Option<&str>) -> NodeArgs {
        NodeArgs { node_rank: rank, coordinator: coordinator.map(str::to_owned), ..NodeArgs::default() }
    }

    #[test]
    fn node_flags_are_checked_against_the_node_count() {
        assert!(NodeSetup::new(1, &NodeArgs::default()).unwrap().is_none());
        let single = NodeSetup::new(1, &args(Some(0), None)).unwrap_err().to_string();
        assert!(single.contains("--node-rank apply with --nodes above 1"), "{single}");
        assert!(NodeSetup::new(2, &args(None, Some("h:1"))).unwrap_err().to_string().contains("needs --node-rank"));
        assert!(NodeSetup::new(2, &args(Some(2), Some("h:1"))).unwrap_err().to_string().contains("not below --nodes 2"));
        assert!(NodeSetup::new(2, &args(Some(1), None)).unwrap_err().to_string().contains("needs --coordinator"));
        assert!(NodeSetup::new(2, &args(Some(1), Some("host"))).unwrap_err().to_string().contains("expected HOST:PORT"));
        assert!(NodeSetup::new(2, &args(Some(1), Some("host:http"))).unwrap_err().to_string().contains("not a port number"));
        let setup = NodeSetup::new(3, &args(Some(2), Some("[::1]:29500"))).unwrap().unwrap();
        assert_eq!((setup.rank, setup.nodes, setup.peer_timeout.as_secs()), (2, 3, DEFAULT_PEER_TIMEOUT_S));
        assert_eq!(setup.coordinator, HostPort { host: "::1".to_owned(), port: 29500 });
        let zero = NodeArgs { peer_timeout: Some(0), ..args(Some(0), Some("h:1")) };
        assert!(NodeSetup::new(2, &zero).unwrap_err().to_string().contains("--peer-timeout must be at least 1"));
    }
}
