//! Where this process runs: the cores it may use (its CPU affinity mask) and the host's name.

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

/// This host's name (as `hostname` prints it), or `"?"` when the OS does not say.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length, which is passed.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match String::from_utf8_lossy(&buf[..end]) {
        name if ok && !name.is_empty() => name.into_owned(),
        _ => "?".into(),
    }
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

    #[test]
    fn the_host_name_is_the_kernels() {
        if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            assert_eq!(super::host_name(), name.trim());
        }
    }
}
