//! The layer rules of `lib.rs`, checked on the sources: no import cycle between the crate's
//! top-level modules, no SQL outside `db`, and front ends holding the store but no table.
//! Test modules and comments are left out (tests may do anything).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every source file under `src/`, with its text minus comments and test modules.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name != "tests.rs" && !name.ends_with("_tests.rs") && name != "main.rs"
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap()
                .split("#[cfg(test)]\npub(crate) mod tests")
                .next()
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            (p.strip_prefix(&root).unwrap().to_path_buf(), code)
        })
        .collect()
}

/// The top-level module a file belongs to (`devices/authorize.rs` → `devices`).
fn top(path: &Path) -> String {
    let first = path
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// `crate::name` paths in `code`, by their first segment.
fn uses(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .map(|(i, m)| {
            code[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let files = sources();
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| top(p)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (p, code) in &files {
        let from = top(p);
        for to in uses(code) {
            if to != from && modules.contains(&to) {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Depth-first search for a back edge; the path found is the cycle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in &modules {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn no_sql_outside_db_and_front_ends_hold_no_table() {
    for (p, code) in sources() {
        let module = top(&p);
        if module != "db" {
            for sql in [
                "sql_query",
                "schema::",
                "diesel::insert_into",
                "diesel::update",
            ] {
                assert!(!code.contains(sql), "{}: {sql} outside db/", p.display());
            }
        }
        if ["cli", "http", "server"].contains(&module.as_str()) {
            for (i, _) in code.match_indices("db::") {
                let rest = &code[i + 4..];
                assert!(
                    rest.starts_with("Store") || rest.starts_with("writer"),
                    "{}: a front end reaches db::{}",
                    p.display(),
                    rest.chars().take(30).collect::<String>()
                );
            }
        }
    }
}

/// One write path: nothing outside `db` begins a transaction. Domain functions run in the
/// caller's write (`Store::write`, the server's writer) and read snapshots go through
/// `db::read_snapshot`; a domain function that began its own transaction would fail inside
/// the writer's, or hold SQLite's lock beside it.
#[test]
fn no_transaction_begins_outside_db() {
    for (p, code) in sources() {
        if top(&p) == "db" {
            continue;
        }
        for begin in ["transaction(", "transaction::<", "batch_execute"] {
            assert!(
                !code.contains(begin),
                "{}: `{begin}` outside db/: write through `Store::write` (or the server's \
                 writer), read through `db::read_snapshot`",
                p.display()
            );
        }
    }
}
