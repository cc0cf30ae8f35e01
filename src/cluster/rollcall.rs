//! The roll call that names the rank a stalled job is waiting for.
//!
//! When the stall watchdog fires, every waiting rank knows only that *some* rank has not
//! joined the collective. To say which, each rank keeps a small UDP socket with a thread
//! that answers "where are you?" with where it is (waiting in a collective, or busy
//! elsewhere: reading a file, computing). The addresses are exchanged once at start-up. A
//! stalled rank asks every other rank and waits a moment: a rank that does not answer has
//! stopped, hangs in the kernel or is cut off from the network; a rank that answers from
//! elsewhere has not reached the collective. The lowest rank that waits prints the verdict,
//! so the job shows one message, not one per rank.
//!
//! The roll call is best effort: where UDP between nodes is blocked nobody answers, and the
//! message says that too.

use super::Comm;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Bytes of one rank's entry in the exchanged table: its host name and addresses as text.
const ENTRY_BYTES: usize = 1024;
/// First word of every datagram.
const MAGIC: &str = "nnmpi-rollcall";

/// Where a rank is when asked.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// In a collective for `waited`; `what`: the collective and the position.
    Waiting { waited: Duration, what: String },
    /// Not in a collective: `at` says where (the phase and position).
    Elsewhere { at: String },
}

impl State {
    fn encode(&self) -> String {
        match self {
            State::Waiting { waited, what } => format!("W {} {what}", waited.as_millis()),
            State::Elsewhere { at } => format!("E {at}"),
        }
    }

    fn decode(text: &str) -> Option<State> {
        let (kind, rest) = text.split_once(' ')?;
        match kind {
            "W" => {
                let (ms, what) = rest.split_once(' ')?;
                Some(State::Waiting {
                    waited: Duration::from_millis(ms.parse().ok()?),
                    what: what.to_string(),
                })
            }
            "E" => Some(State::Elsewhere {
                at: rest.to_string(),
            }),
            _ => None,
        }
    }
}

/// One rank as the others reach it.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Its host name.
    pub host: String,
    /// Where its roll-call socket listens (one per network address of its host).
    pub addresses: Vec<SocketAddr>,
}

/// This rank's part in the roll call: the table of every rank's addresses and the key that
/// marks this job's datagrams.
pub struct RollCall {
    rank: usize,
    key: u64,
    peers: Vec<Peer>,
}

impl RollCall {
    /// Opens this rank's roll-call socket, exchanges the addresses with every rank of `comm`
    /// (a collective: every rank calls it) and starts the thread that answers with `state()`.
    /// `host`: this rank's host name. Fails (on every rank alike, after the exchange) only if
    /// the socket cannot be opened; then no rank answers and the verdict says so.
    pub fn open<C: Comm>(
        comm: &C,
        host: &str,
        state: impl Fn() -> State + Send + 'static,
    ) -> RollCall {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok();
        let port = socket
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map_or(0, |a| a.port());
        let mut entry = host.to_string();
        if port != 0 {
            for ip in local_addresses() {
                let _ = write!(entry, "\n{}", SocketAddr::new(ip, port));
            }
        }
        let mut bytes = entry.into_bytes();
        bytes.truncate(ENTRY_BYTES);
        bytes.resize(ENTRY_BYTES, 0);
        let mut table = vec![0u8; ENTRY_BYTES * comm.size()];
        comm.all_gather_varcount(&bytes, &mut table, &vec![ENTRY_BYTES; comm.size()]);
        let key = fnv1a(&table);
        let peers = table.chunks(ENTRY_BYTES).map(parse_entry).collect();
        let roll = RollCall {
            rank: comm.rank(),
            key,
            peers,
        };
        if let Some(socket) = socket {
            roll.answer_on(socket, state);
        }
        roll
    }

    /// Every rank of the job, by rank.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    fn answer_on(&self, socket: UdpSocket, state: impl Fn() -> State + Send + 'static) {
        let (key, rank) = (self.key, self.rank);
        let spawned = std::thread::Builder::new()
            .name("nnmpi-rollcall".into())
            .spawn(move || {
                let question = format!("{MAGIC} {key:016x} Q");
                let mut buf = [0u8; 256];
                loop {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let asked = buf[..n].starts_with(question.as_bytes());
                    if asked {
                        let answer = format!("{MAGIC} {key:016x} A {rank} {}", state().encode());
                        let _ = socket.send_to(answer.as_bytes(), from);
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("warning: the roll-call thread could not start: {e}");
        }
    }

    /// Asks every other rank where it is and collects the answers that arrive within `wait`
    /// (sooner when all have answered), by rank.
    pub fn ask(&self, wait: Duration) -> BTreeMap<usize, State> {
        let mut answers = BTreeMap::new();
        let Ok(socket) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
            return answers;
        };
        let my_host = &self.peers[self.rank].host;
        let question = format!("{MAGIC} {:016x} Q", self.key);
        for (rank, peer) in self.peers.iter().enumerate() {
            if rank == self.rank {
                continue;
            }
            for address in &peer.addresses {
                // A loopback address reaches the peer only from its own host.
                if !address.ip().is_loopback() || &peer.host == my_host {
                    let _ = socket.send_to(question.as_bytes(), address);
                }
            }
        }
        let prefix = format!("{MAGIC} {:016x} A ", self.key);
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        while answers.len() + 1 < self.peers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
                break;
            }
            let Ok(n) = socket.recv(&mut buf) else {
                continue;
            };
            let answer = std::str::from_utf8(&buf[..n])
                .ok()
                .and_then(|text| text.strip_prefix(&prefix))
                .and_then(|rest| rest.split_once(' '))
                .and_then(|(rank, state)| Some((rank.parse().ok()?, State::decode(state)?)));
            if let Some((rank, state)) = answer
                && rank < self.peers.len()
            {
                answers.insert(rank, state);
            }
        }
        answers
    }

    /// What the job should print when this rank has waited `waited` in `what` and `answers`
    /// came back: the message when this rank is the one to print it (the lowest rank that
    /// waits), `None` when another rank prints it.
    pub fn verdict(
        &self,
        waited: Duration,
        what: &str,
        answers: &BTreeMap<usize, State>,
    ) -> Option<Verdict> {
        let size = self.peers.len();
        let mut waiting = vec![self.rank];
        let mut silent = Vec::new();
        let mut elsewhere = Vec::new();
        for rank in (0..size).filter(|&r| r != self.rank) {
            match answers.get(&rank) {
                None => silent.push(rank),
                Some(State::Waiting { .. }) => waiting.push(rank),
                Some(State::Elsewhere { at }) => elsewhere.push((rank, at.as_str())),
            }
        }
        waiting.sort_unstable();
        if waiting[0] != self.rank {
            return None;
        }
        let mut parts = Vec::new();
        if !silent.is_empty() {
            let verb = if silent.len() == 1 {
                "does not answer"
            } else {
                "do not answer"
            };
            let mut part = format!("{} {verb}", self.ranks_on_hosts(&silent));
            if silent.len() + 1 == size {
                part += " (no rank answered: the ranks have stopped or are cut off, or UDP between the nodes is blocked)";
            } else {
                part += ": stopped, stuck or cut off from the network";
            }
            parts.push(part);
        }
        for (rank, at) in &elsewhere {
            parts.push(format!(
                "{} answers but has not reached the collective: it is at {at}",
                self.ranks_on_hosts(&[*rank])
            ));
        }
        if parts.is_empty() {
            let mut ops: Vec<String> = answers
                .iter()
                .filter_map(|(rank, state)| match state {
                    State::Waiting { what, .. } => Some(format!("rank {rank}: {what}")),
                    State::Elsewhere { .. } => None,
                })
                .collect();
            ops.insert(0, format!("rank {}: {what}", self.rank));
            parts.push(format!(
                "every rank answers and waits ({}): the MPI library or the network is stuck",
                ops.join("; ")
            ));
        }
        let waiters = if waiting.len() == 1 {
            format!("rank {}", waiting[0])
        } else {
            format!("ranks {}", ranges(&waiting))
        };
        Some(Verdict {
            message: format!(
                "{}; {waiters} of {size} waited {:.0} s in {what}",
                parts.join("; "),
                waited.as_secs_f64()
            ),
            culprits: !elsewhere.is_empty() || (!silent.is_empty() && silent.len() + 1 < size),
        })
    }

    /// "rank 2 of 4 (on node03)", "ranks 2, 5 of 8 (on node03, node06)".
    fn ranks_on_hosts(&self, ranks: &[usize]) -> String {
        let mut hosts: Vec<&str> = ranks.iter().map(|&r| self.peers[r].host.as_str()).collect();
        hosts.dedup();
        let noun = if ranks.len() == 1 { "rank" } else { "ranks" };
        format!(
            "{noun} {} of {} (on {})",
            ranges(ranks),
            self.peers.len(),
            hosts.join(", ")
        )
    }
}

/// What a roll call found, as the job prints it.
#[derive(Debug, PartialEq)]
pub struct Verdict {
    /// Which ranks do not answer or are elsewhere, and where the others waited.
    pub message: String,
    /// Whether some ranks answered and others did not, or answered from elsewhere: the
    /// answers point at particular ranks (not a blocked roll call, nor a stuck MPI).
    pub culprits: bool,
}

/// A table entry: the host name, then one address per line.
fn parse_entry(entry: &[u8]) -> Peer {
    let text = String::from_utf8_lossy(entry);
    let mut lines = text.trim_end_matches('\0').lines();
    let host = lines.next().unwrap_or("?").to_string();
    Peer {
        host,
        addresses: lines.filter_map(|l| l.parse().ok()).collect(),
    }
}

/// Sorted ranks as ranges: "0-3, 5, 7-8".
fn ranges(ranks: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ranks.len() {
        let mut j = i;
        while j + 1 < ranks.len() && ranks[j + 1] == ranks[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", ranks[i], ranks[j])
        } else {
            ranks[i].to_string()
        });
        i = j + 1;
    }
    out.join(", ")
}

/// 64-bit FNV-1a: the job's key from the exchanged table (the same on every rank).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// This host's IPv4 addresses, loopback included.
fn local_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list that is walked read-only and freed once
    // with freeifaddrs; each ifa_addr is checked for null and read as sockaddr_in only when
    // its family says AF_INET.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return found;
        }
        let mut entry = head;
        while !entry.is_null() {
            let address = (*entry).ifa_addr;
            if !address.is_null() && i32::from((*address).sa_family) == libc::AF_INET {
                let inet = &*address.cast::<libc::sockaddr_in>();
                found.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    inet.sin_addr.s_addr,
                ))));
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ThreadComm;

    fn waiting(ms: u64) -> State {
        State::Waiting {
            waited: Duration::from_millis(ms),
            what: "all-gather of 8 values (training, epoch 1, mini-batch 2, layer 1)".into(),
        }
    }

    #[test]
    fn states_survive_the_datagram_text() {
        for state in [
            waiting(1234),
            State::Elsewhere {
                at: "writing the checkpoint, epoch 3".into(),
            },
        ] {
            assert_eq!(State::decode(&state.encode()), Some(state));
        }
        assert_eq!(State::decode("X 1 y"), None);
        assert_eq!(State::decode("W notanumber y"), None);
    }

    #[test]
    fn ranks_print_as_ranges() {
        assert_eq!(ranges(&[0, 1, 2, 3, 5, 7, 8]), "0-3, 5, 7-8");
        assert_eq!(ranges(&[4]), "4");
    }

    /// Four ranks as threads on this host: rank 1 answers as waiting, rank 2 from elsewhere,
    /// rank 3 never opens its socket's thread (it "stopped"). Rank 0 asks and prints the
    /// verdict naming rank 3 and rank 2; rank 1, not the lowest waiting rank, prints nothing.
    #[test]
    fn the_roll_call_names_the_silent_rank_and_the_one_elsewhere() {
        let rolls = ThreadComm::run(4, |comm| {
            let rank = comm.rank();
            let roll = RollCall::open(&comm, "here", move || match rank {
                2 => State::Elsewhere {
                    at: "loading the data on rank 0".into(),
                },
                // Rank 3 "stopped": it answers, but too late for the question below.
                3 => {
                    std::thread::sleep(Duration::from_secs(3));
                    waiting(0)
                }
                _ => waiting(900),
            });
            comm.barrier();
            let answers = if rank < 2 {
                roll.ask(Duration::from_millis(1500))
            } else {
                BTreeMap::new()
            };
            comm.barrier();
            (
                roll.peers().len(),
                roll.verdict(
                    Duration::from_secs(10),
                    "all-gather of 8 values (training)",
                    &answers,
                ),
            )
        });
        assert!(rolls.iter().all(|(n, _)| *n == 4));
        let verdict = rolls[0].1.as_ref().expect("rank 0 prints the verdict");
        assert!(verdict.culprits);
        assert_eq!(
            verdict.message,
            "rank 3 of 4 (on here) does not answer: stopped, stuck or cut off from the network; \
             rank 2 of 4 (on here) answers but has not reached the collective: it is at loading the data on rank 0; \
             ranks 0-1 of 4 waited 10 s in all-gather of 8 values (training)"
        );
        assert_eq!(rolls[1].1, None, "rank 1 leaves the message to rank 0");
    }

    #[test]
    fn when_everyone_waits_the_verdict_says_the_collectives_disagree_or_mpi_is_stuck() {
        let roll = RollCall {
            rank: 0,
            key: 1,
            peers: vec![
                Peer {
                    host: "a".into(),
                    addresses: vec![],
                };
                2
            ],
        };
        let answers = BTreeMap::from([(1, waiting(5))]);
        let verdict = roll
            .verdict(
                Duration::from_secs(7),
                "broadcast of 3 values (training)",
                &answers,
            )
            .unwrap();
        assert!(!verdict.culprits);
        let message = verdict.message;
        assert!(
            message.starts_with("every rank answers and waits (rank 0: broadcast of 3 values (training); rank 1: all-gather of 8 values"),
            "{message}"
        );
        // Nobody answered at all.
        let verdict = roll
            .verdict(Duration::from_secs(7), "x", &BTreeMap::new())
            .unwrap();
        assert!(!verdict.culprits);
        assert!(verdict.message.contains("no rank answered"), "{verdict:?}");
    }
}
