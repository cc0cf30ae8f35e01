//! The library's shape, checked: its modules form layers and import only from layers below
//! (the order is stated in the README's architecture section), and it speaks in parameters,
//! not in the command line's flags (the command line, `src/cli/`, maps parameter names to its
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

/// The library's modules, lowest first: a module may import only from modules before it.
const LAYERS: [&str; 13] = [
    "error", "rng", "sparse", "kernels", "cluster", "data", "model", "exec", "prune", "train",
    "io", "bench", "recipe",
];

#[test]
fn modules_import_only_from_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (level, module) in LAYERS.iter().enumerate() {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            library_sources(&dir, &mut files);
        } else {
            files.push(src.join(format!("{module}.rs")));
        }
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                !text.contains("crate::{"),
                "{}: grouped crate imports hide their modules",
                file.display()
            );
            // The code, not its unit tests (which may use anything to check it).
            let code = text.split("#[cfg(test)]").next().unwrap();
            for (at, _) in code.match_indices("crate::") {
                let used: String = code[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                match LAYERS.iter().position(|m| *m == used) {
                    Some(l) if l > level => violations.push(format!(
                        "{} ({module}) uses crate::{used}, a layer above it",
                        file.display()
                    )),
                    Some(_) => {}
                    None => violations.push(format!(
                        "{} uses crate::{used}, which is not in LAYERS",
                        file.display()
                    )),
                }
            }
        }
    }
    // Every library module is placed in a layer.
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        if !["lib", "main", "cli"].contains(&name.as_str()) {
            assert!(
                LAYERS.contains(&name.as_str()),
                "module {name} is in no layer"
            );
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
