//! Verifies that README.md does not drift from the tree: every repository
//! path it names in backticks exists, and every source file under `src/`
//! has a row in its "Where things live" map (named itself, or under a
//! directory the map names).
//!
//! What counts as a path: a code span without spaces that contains a `/` or
//! ends in a source or document extension, and is not a URL, an HTTP path
//! (`/ws`), a flag or a home-relative path. A bare file name (`test.sh`) is
//! looked up beside the path named before it on the same line (the
//! `scripts/` row lists its scripts so), else at the top of the repository.
//! `<placeholder>` parts stand for any name: their parent must exist; a `*`
//! in the last part must match at least one file.

use std::fs;
use std::path::{Path, PathBuf};

/// Extensions that make a span without a `/` a file name.
const FILE_EXTENSIONS: [&str; 8] = ["rs", "md", "sh", "py", "toml", "js", "json", "yml"];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    fs::read_to_string(repo_root().join("README.md")).expect("README.md is readable")
}

/// The code spans of one line, in order.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

fn is_path(span: &str) -> bool {
    let excluded = span.is_empty()
        || span.contains(char::is_whitespace)
        || span.starts_with(['/', '-', '~'])
        || span.contains([':', '=', '{', '"']);
    let has_extension = span
        .rsplit_once('.')
        .is_some_and(|(stem, ext)| !stem.is_empty() && FILE_EXTENSIONS.contains(&ext));
    !excluded && (span.contains('/') || has_extension)
}

/// Whether `path` (relative to the repository, maybe with a placeholder or
/// a `*`) names something that exists.
fn exists(root: &Path, path: &str) -> bool {
    if let Some(at) = path.find('<') {
        // `bench-results/<date>-<host>/`: the directory holding the pattern.
        let parent = path[..at].rsplit_once('/').map_or("", |(dir, _)| dir);
        return root.join(parent).is_dir();
    }
    if let Some((dir, pattern)) = path.trim_end_matches('/').rsplit_once('/')
        && let Some((prefix, suffix)) = pattern.split_once('*')
    {
        return fs::read_dir(root.join(dir)).is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.len() >= prefix.len() + suffix.len() && name.starts_with(prefix) && name.ends_with(suffix)
            })
        });
    }
    let full = root.join(path);
    if path.ends_with('/') {
        full.is_dir()
    } else {
        full.exists()
    }
}

/// Every path README names, resolved against the repository root, with the
/// line it is on.
fn named_paths(text: &str) -> Vec<(String, usize)> {
    let root = repo_root();
    let mut paths = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut context: Option<String> = None;
        for span in code_spans(line).into_iter().filter(|span| is_path(span)) {
            let resolved = match &context {
                Some(dir) if !span.contains('/') && !exists(&root, span) => format!("{dir}{span}"),
                _ => span.to_string(),
            };
            if span.contains('/') {
                // Bare names after this one are looked up beside it.
                let dir = if span.ends_with('/') {
                    span.to_string()
                } else {
                    span.rsplit_once('/')
                        .map_or(String::new(), |(dir, _)| format!("{dir}/"))
                };
                context = Some(dir);
            }
            paths.push((resolved, number + 1));
        }
    }
    paths
}

/// The "Where things live" section.
fn map_section(text: &str) -> &str {
    let start = text
        .find("## Where things live")
        .expect("README has a \"Where things live\" section");
    let body = &text[start + 3..];
    let end = body.find("\n## ").map_or(text.len(), |at| start + 3 + at);
    &text[start..end]
}

/// Every `.rs` file below `dir`, relative to `root`, with `/` separators.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("readable directory").filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(root, &path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(root).expect("below the root");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn every_path_the_readme_names_exists() {
    let root = repo_root();
    let text = readme();
    let paths = named_paths(&text);
    assert!(paths.len() > 20, "too few paths found; is the parser right? {paths:?}");
    let missing: Vec<String> = paths
        .iter()
        .filter(|(path, _)| !exists(&root, path))
        .map(|(path, line)| format!("README.md:{line}: `{path}`"))
        .collect();
    assert!(
        missing.is_empty(),
        "README names paths that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_source_file_has_a_row_in_the_map() {
    let root = repo_root();
    let text = readme();
    let named: Vec<String> = named_paths(map_section(&text))
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let mut files = Vec::new();
    rust_files(&root, &root.join("src"), &mut files);
    assert!(
        files.iter().any(|f| f == "src/lib.rs"),
        "walked the wrong tree: {files:?}"
    );
    let unmapped: Vec<&String> = files
        .iter()
        .filter(|file| {
            !named
                .iter()
                .any(|path| path == *file || (path.ends_with('/') && file.starts_with(path.as_str())))
        })
        .collect();
    assert!(
        unmapped.is_empty(),
        "files under src/ with no row in README's \"Where things live\": {unmapped:?}"
    );
}

#[test]
fn the_path_rules_catch_what_they_should() {
    // The checks above pass only if these rules see the paths at all.
    assert!(is_path("src/shard/mod.rs") && is_path("scripts/") && is_path("BENCHMARKS.md"));
    assert!(is_path("tests/admin_*.rs") && is_path(".ci/run") && is_path("bench-results/<date>-<host>/"));
    for not_a_path in [
        "/ws/availability",
        "--no-pin",
        "~/.cache/fanout/",
        "ws://127.0.0.1:3009/ws",
        "booking.created",
    ] {
        assert!(!is_path(not_a_path), "{not_a_path}");
    }
    let root = repo_root();
    assert!(!exists(&root, "src/config.rs"), "a file that moved is missing");
    assert!(!exists(&root, "tests/nothing_*.rs"));
    assert_eq!(
        named_paths("| scripts | `scripts/` (`test.sh`, `no-such.sh`) |"),
        [
            ("scripts/".into(), 1),
            ("scripts/test.sh".into(), 1),
            ("scripts/no-such.sh".into(), 1)
        ]
    );
}
