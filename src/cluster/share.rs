//! Handing rank 0's outcome (success or its error message) to every rank.

use super::Comm;

/// Copies rank `root`'s message (`Err`) or its success (`Ok`) to every rank: returns `None`
/// when the root succeeded, else the root's message. Every rank must call it.
pub fn broadcast_outcome<C: Comm>(
    comm: &C,
    root: usize,
    outcome: Result<(), String>,
) -> Option<String> {
    let mut bytes = match &outcome {
        Ok(()) => vec![0],
        Err(message) => [&[1u8][..], message.as_bytes()].concat(),
    };
    comm.broadcast_bytes(root, &mut bytes);
    (bytes.first() == Some(&1)).then(|| String::from_utf8_lossy(&bytes[1..]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::SelfComm;

    #[test]
    fn one_rank_gets_its_own_outcome_back() {
        assert_eq!(
            broadcast_outcome(&SelfComm, 0, Err("bad".into())),
            Some("bad".into())
        );
        assert_eq!(broadcast_outcome(&SelfComm, 0, Ok(())), None);
    }
}
