//! The gradient exchange: every node's flattened gradients averaged, through node 0 (a star).
//! Each other node sends its values to node 0 over its gradient connection; node 0 adds them in
//! rank order to its own, divides by the node count and sends the mean back, so every node gets
//! the same bits. Frames: the value count (u64, little-endian), then the f32 values
//! (little-endian). Per step node 0's link carries 2 (N − 1) × the gradient bytes, every other
//! node's 2 ×; a ring would spread node 0's share, which matters beyond a few nodes.
//!
//! burn-collective 0.21's multi-node all-reduce was the first choice, but it completes only one
//! call per process: its `SyncService::sync` clears a copy of the list of synced peers instead of
//! the list, so the second all-reduce (of every strategy: ring, tree, centralized) waits forever
//! (`burn-collective-0.21.0/src/global/node/sync.rs`; README, "Several machines").

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;

/// This node's gradient connections.
pub enum Exchange {
    /// Node 0: a connection per other node, in rank order.
    Hub(Vec<(usize, BufReader<TcpStream>)>),
    /// Any other node: the connection to node 0.
    Spoke(BufReader<TcpStream>),
}

fn send(stream: &mut TcpStream, values: &[f32]) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(8 + 4 * values.len());
    bytes.extend_from_slice(&(values.len() as u64).to_le_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    stream.write_all(&bytes)?;
    stream.flush()
}

fn receive(stream: &mut BufReader<TcpStream>, expected: usize, from: &str) -> std::io::Result<Vec<f32>> {
    let mut count = [0u8; 8];
    stream.read_exact(&mut count)?;
    let count = u64::from_le_bytes(count) as usize;
    if count != expected {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{from} sent {count} gradient values, this node has {expected}: the nodes train different models"),
        ));
    }
    let mut bytes = vec![0u8; 4 * count];
    stream.read_exact(&mut bytes)?;
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

impl Exchange {
    /// The mean over all `nodes` of each node's `values` (every node passes as many).
    pub fn mean(&mut self, values: Vec<f32>, nodes: usize) -> std::io::Result<Vec<f32>> {
        match self {
            Self::Hub(members) => {
                let mut sum = values;
                for (rank, stream) in members.iter_mut() {
                    let theirs = receive(stream, sum.len(), &format!("node {rank}"))?;
                    sum.iter_mut().zip(theirs).for_each(|(s, t)| *s += t);
                }
                let mean: Vec<f32> = sum.into_iter().map(|s| s / nodes as f32).collect();
                for (_, stream) in members.iter_mut() {
                    send(stream.get_mut(), &mean)?;
                }
                Ok(mean)
            }
            Self::Spoke(hub) => {
                send(hub.get_mut(), &values)?;
                receive(hub, values.len(), "node 0")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn three_nodes_get_the_same_mean_in_rank_order() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let spokes: Vec<_> = (1..3)
            .map(|rank| {
                std::thread::spawn(move || {
                    let stream = TcpStream::connect(address).unwrap();
                    let mut exchange = Exchange::Spoke(BufReader::new(stream));
                    exchange.mean(vec![rank as f32, 10.0 * rank as f32, 0.1], 3).unwrap()
                })
            })
            .collect();
        let mut members: Vec<(usize, BufReader<TcpStream>)> = Vec::new();
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            members.push((members.len() + 1, BufReader::new(stream)));
        }
        let mut hub = Exchange::Hub(members);
        let mean = hub.mean(vec![0.0, 0.0, 0.1], 3).unwrap();
        // (0 + 1 + 2) / 3, (0 + 10 + 20) / 3, (0.1 + 0.1 + 0.1) / 3 summed in f32 rank order.
        let third = ((0.1f32 + 0.1) + 0.1) / 3.0;
        assert_eq!(mean, vec![1.0, 10.0, third]);
        for spoke in spokes {
            assert_eq!(spoke.join().unwrap(), mean);
        }
    }

    #[test]
    fn a_node_with_another_model_is_an_error_naming_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let spoke = std::thread::spawn(move || {
            let mut exchange = Exchange::Spoke(BufReader::new(TcpStream::connect(address).unwrap()));
            exchange.mean(vec![1.0; 5], 2)
        });
        let (stream, _) = listener.accept().unwrap();
        let error = Exchange::Hub(vec![(1, BufReader::new(stream))]).mean(vec![1.0; 4], 2).unwrap_err();
        assert!(error.to_string().contains("node 1 sent 5 gradient values, this node has 4"), "{error}");
        drop(spoke);
    }
}
