//! `wallaroo fmt`: rewrites spec files in place, or checks them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wallaroo_spec::format::format_hcl;

use crate::args::{FmtArgs, Global};
use crate::report::Failure;

pub fn run(global: &Global, args: &FmtArgs) -> Result<ExitCode, Failure> {
    let roots = if args.paths.is_empty() {
        vec![global.config.clone()]
    } else {
        args.paths.clone()
    };
    let mut files = Vec::new();
    for root in &roots {
        collect(root, &mut files)
            .map_err(|e| Failure::message(format!("{}: {e}", root.display())))?;
    }
    let mut unformatted = 0;
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::message(format!("{}: {e}", file.display())))?;
        let formatted =
            format_hcl(&text).map_err(|e| Failure::message(format!("{}: {e}", file.display())))?;
        if formatted == text {
            continue;
        }
        unformatted += 1;
        println!("{}", file.display());
        if args.diff {
            let diff = similar::TextDiff::from_lines(&text, &formatted);
            print!(
                "{}",
                diff.unified_diff()
                    .header(&file.display().to_string(), &file.display().to_string())
            );
        }
        if !args.check {
            write_atomically(file, &formatted)
                .map_err(|e| Failure::message(format!("{}: {e}", file.display())))?;
        }
    }
    Ok(if args.check && unformatted > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "hcl") {
                out.push(p);
            }
        }
    } else {
        std::fs::metadata(path)?;
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("hcl.fmt-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
