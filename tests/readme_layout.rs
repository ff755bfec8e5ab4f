//! The README's Layout section is what a reader finds under `src/`: every path it names exists,
//! every module and binary is named, and the modules come in the order `src/lib.rs` declares
//! them.

use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn the_readme_layout_lists_every_module_in_the_order_of_lib_rs() {
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let layout = readme
        .split_once("## Layout\n\n```\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("the README has a Layout section with a code block");
    // An entry starts at the line's start; its continuation lines are indented.
    let named: Vec<&str> = layout
        .lines()
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .collect();

    let missing: Vec<&&str> = named
        .iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "named in the README but not there: {missing:?}"
    );

    let listed_modules: Vec<String> = named.iter().filter_map(|path| module_of(path)).collect();
    assert_eq!(
        listed_modules,
        declared_modules(),
        "the README's src/ lines, in the order of the modules in src/lib.rs"
    );

    let on_disk: BTreeSet<String> = std::fs::read_dir("src")
        .expect("src/")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let unnamed: Vec<&String> = on_disk
        .iter()
        .filter(|entry| {
            let stem = entry.trim_end_matches(".rs");
            !named.iter().any(|path| {
                let path = path.trim_start_matches("src/").trim_end_matches('/');
                path.trim_end_matches(".rs") == stem
            })
        })
        .collect();
    assert!(
        unnamed.is_empty(),
        "under src/ but not in the README: {unnamed:?}"
    );
}

/// `src/provider/` and `src/admin.rs` name the modules `provider` and `admin`; the crate root,
/// the binaries and everything outside `src/` name none.
fn module_of(path: &str) -> Option<String> {
    let name = path
        .strip_prefix("src/")?
        .trim_end_matches('/')
        .trim_end_matches(".rs");
    (!matches!(name, "lib" | "main" | "bin")).then(|| name.to_string())
}

/// The modules of `src/lib.rs` that live in files of their own, in the order it declares them.
fn declared_modules() -> Vec<String> {
    std::fs::read_to_string("src/lib.rs")
        .expect("src/lib.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("pub mod "))
        .filter_map(|rest| rest.strip_suffix(';'))
        .map(String::from)
        .collect()
}
