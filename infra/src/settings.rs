//! Where the workspace and the local stack's files live, and the defaults a running local
//! stack publishes in `.local/stack.env`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// The local state directory, relative to the workspace root.
pub const STATE_DIR: &str = ".local";
/// Overrides the state directory (relative to the workspace root, or absolute), so a second
/// stack (the one `make test` starts) keeps its keys, settings and logs apart.
pub const STATE_DIR_VAR: &str = "TIERUP_STATE_DIR";

#[derive(Debug, Clone)]
pub struct Paths {
    /// The workspace root: the directory holding template.yaml.
    pub root: PathBuf,
    pub state: PathBuf,
}

impl Paths {
    /// Finds the workspace root from the current directory upwards.
    pub fn discover() -> Result<Paths> {
        let cwd = std::env::current_dir().context("reading the current directory")?;
        let root = cwd
            .ancestors()
            .find(|dir| dir.join("template.yaml").is_file())
            .ok_or_else(|| {
                anyhow!(
                    "no template.yaml in {} or above; run tierup inside the tierup workspace",
                    cwd.display()
                )
            })?
            .to_path_buf();
        let state = match std::env::var(STATE_DIR_VAR) {
            Ok(dir) if !dir.trim().is_empty() => root.join(dir.trim()),
            _ => root.join(STATE_DIR),
        };
        Ok(Paths { root, state })
    }

    pub fn template(&self) -> PathBuf {
        self.root.join("template.yaml")
    }

    pub fn stack_env(&self) -> PathBuf {
        self.state.join("stack.env")
    }

    pub fn functions_env(&self) -> PathBuf {
        self.state.join("functions.env")
    }

    pub fn logs(&self) -> PathBuf {
        self.state.join("logs")
    }
}

/// Parses `KEY=VALUE` lines; blank lines and `#` comments are skipped.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {}: expected KEY=VALUE", number + 1);
        };
        vars.insert(key.trim().to_string(), value.to_string());
    }
    Ok(vars)
}

/// Renders `KEY=VALUE` lines, refusing values an env file cannot carry.
pub fn render_env_file(vars: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    for (key, value) in vars {
        if value.contains(['\n', '\r']) {
            bail!("{key}: a value with a line break cannot go into an env file");
        }
        out.push_str(&format!("{key}={value}\n"));
    }
    Ok(out)
}

/// Copies `.local/stack.env` into the process environment without overriding variables that
/// are already set, so commands work after `make run` and exported variables win. Must run
/// before any thread is started.
pub fn adopt_stack_env(paths: &Paths) -> Result<()> {
    let path = paths.stack_env();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let vars = parse_env_file(&text).with_context(|| format!("in {}", path.display()))?;
    for (key, value) in vars {
        if std::env::var_os(&key).is_none() {
            std::env::set_var(key, value);
        }
    }
    Ok(())
}

/// A variable that must be set, with a hint on how to get it.
pub fn required_var(key: &str) -> Result<String> {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("{key} is not set; start the local stack (`make run`) or export it"))
}

/// Writes a file atomically enough for readers that poll it (write, then rename).
pub fn write_file(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_round_trip_and_reject_garbage() {
        let vars: BTreeMap<String, String> = [
            ("A".to_string(), "1".to_string()),
            ("URL".to_string(), "http://x/?a=b".to_string()),
        ]
        .into();
        let text = render_env_file(&vars).unwrap();
        assert_eq!(parse_env_file(&format!("# c\n\n{text}")).unwrap(), vars);
        assert!(parse_env_file("NOEQUALS").is_err());
        let bad: BTreeMap<String, String> = [("A".to_string(), "x\ny".to_string())].into();
        assert!(render_env_file(&bad).is_err());
    }
}
