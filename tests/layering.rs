//! The library speaks in parameters, not in the command line's flags: no string in a library
//! source file names a `--flag` (the command line, `src/cli/`, maps parameter names to its
//! flags, see `cli::describe`).

use std::path::Path;

fn library_sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "cli") {
                library_sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "main.rs")
        {
            out.push(path);
        }
    }
}

#[test]
fn library_messages_name_no_command_line_flag() {
    let mut files = Vec::new();
    library_sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 20, "found {} library files", files.len());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Only the library's code: its unit tests may run the command's flags.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (no, line) in code.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                continue;
            }
            // A string literal holding `--` then a letter.
            let mut in_string = false;
            let bytes = line.as_bytes();
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'"' && (i == 0 || bytes[i - 1] != b'\\') {
                    in_string = !in_string;
                } else if in_string
                    && bytes[i..].starts_with(b"--")
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_lowercase)
                {
                    found.push(format!("{}:{}: {}", file.display(), no + 1, trimmed));
                    break;
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "flags in library messages:\n{}",
        found.join("\n")
    );
}
