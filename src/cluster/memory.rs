//! How much memory this process may use, so that a job too big for the machine ends with a
//! message instead of an allocation abort or the OOM killer.

use crate::error::{Error, Result};

/// Bytes this process may still allocate: the kernel's `MemAvailable`, lowered to what the
/// cgroup's memory limit leaves (v2 `memory.max`, or v1 `memory.limit_in_bytes`), where the
/// OS tells (Linux).
pub fn memory_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())?
        * 1024;
    let read = |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let cgroup_room = [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ]
    .iter()
    .find_map(|(limit, used)| Some(read(limit)?.saturating_sub(read(used)?)));
    Some(cgroup_room.map_or(available, |room| room.min(available)))
}

/// Ranks of this job on this node, as the launcher tells (Open MPI, MPICH, PMIx, Slurm);
/// 1 when none does.
pub fn ranks_on_this_node() -> u64 {
    [
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MPI_LOCALNRANKS",
        "PMIX_LOCAL_SIZE",
        "SLURM_NTASKS_PER_NODE",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse::<u64>().ok())
    .unwrap_or(1)
    .max(1)
}

/// `bytes` in a unit a person reads at a glance (GiB, MiB with two decimals, KiB with one).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.2} MiB", b / 1_048_576.0),
        _ => format!("{:.2} GiB", b / 1_073_741_824.0),
    }
}

/// An error, before anything is allocated, when `what` needs more than this node has: each
/// of the node's ranks needs `bytes_per_rank` of the memory available.
pub fn check_memory(what: &str, bytes_per_rank: u64) -> Result<()> {
    let Some(available) = memory_available() else {
        return Ok(());
    };
    let ranks = ranks_on_this_node();
    let needed = bytes_per_rank.saturating_mul(ranks);
    if needed <= available {
        return Ok(());
    }
    let per_rank = if ranks > 1 {
        format!(
            " ({} per rank, {ranks} ranks on this node)",
            human_bytes(bytes_per_rank)
        )
    } else {
        String::new()
    };
    Err(Error::config(format!(
        "{what} needs about {}{per_rank}, more than the {} of memory available here: use smaller layers or batches, or more nodes",
        human_bytes(needed),
        human_bytes(available)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_reports_memory_and_absurd_needs_are_refused() {
        let available = memory_available().expect("Linux reports MemAvailable");
        assert!(available > 1 << 20, "{available} bytes");
        assert!(check_memory("a tiny model", 1024).is_ok());
        let err = check_memory("a 40 GB model", u64::MAX / 2)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a 40 GB model needs about") && err.contains("available"),
            "{err}"
        );
        assert_eq!(human_bytes(3 * 1_073_741_824 / 2), "1.50 GiB");
        assert_eq!(human_bytes(512), "512 B");
    }
}
