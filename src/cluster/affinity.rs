//! How many cores this process may run on (its CPU affinity mask).

/// The number of cores in this process's affinity mask, where the OS tells (Linux).
pub fn cores_available() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain data, zeroed is a valid empty set, and the size passed
        // is its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
                return usize::try_from(libc::CPU_COUNT(&set)).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn agrees_with_the_standard_library() {
        // std reads the same mask, then may lower it further for a cgroup CPU quota.
        if let (Some(n), Ok(std_n)) = (
            super::cores_available(),
            std::thread::available_parallelism(),
        ) {
            assert!(n >= std_n.get(), "mask {n} < std {std_n}");
        }
    }
}
