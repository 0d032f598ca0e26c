//! The CodeXGLUE code-to-text splits from the Hugging Face dataset
//! `google/code_x_glue_ct_code_to_text`, converted to the reference jsonl layout.
//!
//! The dataset holds the same cleaned splits as the CodeXGLUE jsonl files (spec §1.2), as
//! parquet files with the CodeSearchNet columns (`id`, `repo`, `path`, `func_name`,
//! `original_string`, `language`, `code`, `code_tokens`, `docstring`, `docstring_tokens`,
//! `sha`, `url`). The file layout is an assumption from the Hub's conventions
//! (`{lang}/{split}-0000N-of-0000M.parquet`, or `{lang}/{split}/NNNN.parquet` on the parquet
//! conversion branch), so selection is tolerant: every `.parquet` file below the snapshot
//! with a path component equal to the language and a file or folder name starting with the
//! split (`valid`, `validation` and `dev` are the same split), in path order.
//!
//! Files are looked up in the hf-hub cache first (`HF_HOME`, layout
//! `datasets--{org}--{name}/snapshots/<rev>/…` with `refs/main`), downloaded otherwise (not
//! with `HF_HUB_OFFLINE=1`), and converted once to `{out}/{lang}/{split}.jsonl`: one JSON
//! object per row with every column, lists of strings as JSON arrays — what
//! [`read_examples`](crate::read_examples) reads. An existing jsonl is reused.

use crate::{DataError, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

fn hub_error(location: impl std::fmt::Display, message: impl std::fmt::Display) -> DataError {
    DataError::Hub {
        location: location.to_string(),
        message: message.to_string(),
    }
}

/// Names a split goes by on the Hub and in the reference layout.
pub fn split_aliases(split: &str) -> Vec<&str> {
    match split {
        "valid" | "validation" | "dev" => vec!["valid", "validation", "dev"],
        other => vec![other],
    }
}

/// Whether a repository file (`/`-separated, relative to the snapshot) holds rows of
/// `lang`/`split`.
pub fn is_split_file(repo_path: &str, lang: &str, split: &str) -> bool {
    if !repo_path.ends_with(".parquet") {
        return false;
    }
    let parts: Vec<&str> = repo_path.split('/').collect();
    let Some(lang_at) = parts.iter().position(|p| *p == lang) else {
        return false;
    };
    let aliases = split_aliases(split);
    parts[lang_at + 1..].iter().any(|p| {
        aliases.iter().any(|a| {
            p == a
                || p.strip_prefix(a)
                    .is_some_and(|rest| rest.starts_with(['-', '_', '.']))
        })
    })
}

/// The cache folder of a dataset repository: `{cache}/datasets--{org}--{name}`.
pub fn dataset_cache_dir(cache: &hf_hub::Cache, dataset: &str) -> PathBuf {
    cache
        .path()
        .join(format!("datasets--{}", dataset.replace('/', "--")))
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.is_dir() {
            walk(&path, base, out)?;
        } else if let Ok(rel) = path.strip_prefix(base) {
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

/// Parquet files of `lang`/`split` in the cached snapshot of `refs/main`, in path order
/// (empty when the dataset or the split is not cached).
pub fn cached_split_files(
    cache: &hf_hub::Cache,
    dataset: &str,
    lang: &str,
    split: &str,
) -> Result<Vec<PathBuf>> {
    let repo = dataset_cache_dir(cache, dataset);
    let refs = repo.join("refs").join("main");
    let Ok(revision) = std::fs::read_to_string(&refs) else {
        return Ok(Vec::new());
    };
    let snapshot = repo.join("snapshots").join(revision.trim());
    if !snapshot.is_dir() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    walk(&snapshot, &snapshot, &mut files)?;
    files.retain(|f| is_split_file(f, lang, split));
    files.sort();
    Ok(files.into_iter().map(|f| snapshot.join(f)).collect())
}

fn download_split_files(dataset: &str, lang: &str, split: &str) -> Result<Vec<PathBuf>> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| hub_error(dataset, e))?;
    let repo = api.dataset(dataset.to_string());
    let info = repo.info().map_err(|e| hub_error(dataset, e))?;
    let mut names: Vec<String> = info
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .filter(|f| is_split_file(f, lang, split))
        .collect();
    names.sort();
    names
        .iter()
        .map(|name| {
            repo.get(name)
                .map_err(|e| hub_error(format!("{dataset}/{name}"), e))
        })
        .collect()
}

fn field_to_json(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(v) => Value::from(*v),
        Field::Short(v) => Value::from(*v),
        Field::Int(v) => Value::from(*v),
        Field::Long(v) => Value::from(*v),
        Field::UByte(v) => Value::from(*v),
        Field::UShort(v) => Value::from(*v),
        Field::UInt(v) => Value::from(*v),
        Field::ULong(v) => Value::from(*v),
        Field::Float(v) => Value::from(*v),
        Field::Double(v) => Value::from(*v),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => Value::String(String::from_utf8_lossy(b.data()).into_owned()),
        Field::ListInternal(list) => {
            Value::Array(list.elements().iter().map(field_to_json).collect())
        }
        Field::Group(row) => Value::Object(
            row.get_column_iter()
                .map(|(k, v)| (k.clone(), field_to_json(v)))
                .collect(),
        ),
        // Maps, dates and decimals are not CodeSearchNet columns; keep their text form.
        other => Value::String(other.to_string()),
    }
}

/// Appends every row of a parquet file as a JSON line; returns the row count.
pub fn parquet_to_jsonl(parquet: &Path, out: &mut impl Write, out_path: &Path) -> Result<usize> {
    let file = std::fs::File::open(parquet).map_err(|e| DataError::io(parquet, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| hub_error(parquet.display(), e))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| hub_error(parquet.display(), e))?;
    let mut count = 0;
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| hub_error(format!("{} row {}", parquet.display(), i + 1), e))?;
        let object: Map<String, Value> = row
            .get_column_iter()
            .map(|(k, v)| (k.clone(), field_to_json(v)))
            .collect();
        if !object.contains_key("code_tokens") || !object.contains_key("docstring_tokens") {
            return Err(hub_error(
                parquet.display(),
                "no code_tokens/docstring_tokens columns: not a CodeSearchNet file",
            ));
        }
        serde_json::to_writer(&mut *out, &object).map_err(|e| hub_error(out_path.display(), e))?;
        out.write_all(b"\n")
            .map_err(|e| DataError::io(out_path, e))?;
        count += 1;
    }
    Ok(count)
}

/// Converts parquet files (in order) into one jsonl file, atomically.
pub fn parquet_files_to_jsonl(files: &[PathBuf], jsonl: &Path) -> Result<usize> {
    if let Some(dir) = jsonl.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let partial = jsonl.with_extension("jsonl.partial");
    let file = std::fs::File::create(&partial).map_err(|e| DataError::io(&partial, e))?;
    let mut out = std::io::BufWriter::new(file);
    let mut rows = 0;
    for f in files {
        rows += parquet_to_jsonl(f, &mut out, &partial)?;
    }
    out.flush().map_err(|e| DataError::io(&partial, e))?;
    drop(out);
    std::fs::rename(&partial, jsonl).map_err(|e| DataError::io(jsonl, e))?;
    Ok(rows)
}

/// `{out_dir}/{lang}/{split}.jsonl` from the given cache (downloading into it when the split
/// is not cached and `allow_download`); reused when it already exists.
pub fn split_jsonl_with_cache(
    cache: &hf_hub::Cache,
    dataset: &str,
    lang: &str,
    split: &str,
    out_dir: &Path,
    allow_download: bool,
) -> Result<PathBuf> {
    let jsonl = out_dir.join(lang).join(format!("{split}.jsonl"));
    if jsonl.is_file() {
        return Ok(jsonl);
    }
    let mut files = cached_split_files(cache, dataset, lang, split)?;
    if files.is_empty() {
        if !allow_download {
            return Err(hub_error(
                dataset,
                format!(
                    "no parquet file for {lang}/{split} in the cache {} and downloads are off (HF_HUB_OFFLINE)",
                    dataset_cache_dir(cache, dataset).display()
                ),
            ));
        }
        files = download_split_files(dataset, lang, split)?;
        if files.is_empty() {
            return Err(hub_error(
                dataset,
                format!("the dataset has no parquet file for {lang}/{split}"),
            ));
        }
    }
    parquet_files_to_jsonl(&files, &jsonl)?;
    Ok(jsonl)
}

/// [`split_jsonl_with_cache`] with the cache of the environment (`HF_HOME`), downloading
/// unless `HF_HUB_OFFLINE` is set.
pub fn split_jsonl(dataset: &str, lang: &str, split: &str, out_dir: &Path) -> Result<PathBuf> {
    let offline = hub_offline();
    split_jsonl_with_cache(
        &hf_hub::Cache::from_env(),
        dataset,
        lang,
        split,
        out_dir,
        !offline,
    )
}

/// Whether `HF_HUB_OFFLINE` asks for no downloads, read as `huggingface_hub` reads it (`1`,
/// `true`, `on` or `yes`, in any case).
pub fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "on" | "yes"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_files_are_recognised_in_both_layouts() {
        assert!(is_split_file(
            "ruby/train-00000-of-00001.parquet",
            "ruby",
            "train"
        ));
        assert!(is_split_file(
            "ruby/validation-00000-of-00001.parquet",
            "ruby",
            "valid"
        ));
        assert!(is_split_file("ruby/test/0000.parquet", "ruby", "test"));
        assert!(is_split_file(
            "data/ruby/valid.parquet",
            "ruby",
            "validation"
        ));
        assert!(!is_split_file(
            "ruby/train-00000-of-00001.parquet",
            "ruby",
            "test"
        ));
        assert!(!is_split_file(
            "go/train-00000-of-00001.parquet",
            "ruby",
            "train"
        ));
        assert!(!is_split_file("ruby/trainer.parquet", "ruby", "train"));
        assert!(!is_split_file("ruby/train.jsonl", "ruby", "train"));
    }
}
