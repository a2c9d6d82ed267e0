//! The raw material settings are resolved from: flags, the environment (with `NAME_FILE` for
//! secrets) and the TOML config file, each value with the place it was read from.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::settings::{SETTINGS, is_secret};

/// Secret and config files larger than this are refused: they are a few lines long, and a
/// mistaken `/dev/zero` must not fill the memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Where a setting's value was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(String),
    Env(String),
    EnvFile { var: String, path: PathBuf },
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = |p: &Path| crate::output::escape(&p.display().to_string());
        match self {
            Source::Flag(name) => write!(f, "flag {name}"),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::EnvFile { var, path: p } => write!(f, "{var}={}", path(p)),
            Source::File(p) => write!(f, "config file {}", path(p)),
            Source::Default => write!(f, "default"),
        }
    }
}

/// A contract (`[contracts]`, `BROKER_OPS_CONTRACT_<KEY>`) that could not be used: which key,
/// where its value was read, why. Defined with the layers it is read from, so that the
/// contracts depend on the configuration's layers and never the other way round.
#[derive(Debug, thiserror::Error)]
#[error("contracts.{key} from {source_}: {reason}")]
pub struct ContractsError {
    pub key: String,
    pub source_: Source,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown environment variable {name}{hint}: docs/configuration.md lists every BROKER_OPS_* variable")]
    UnknownVariable { name: String, hint: String },
    #[error(
        "{name} is not set (set the environment variable {name}, {name}_FILE, or `{key}` in the config file{looked})"
    )]
    Missing { name: &'static str, key: String, looked: String },
    #[error("{name} from {source_}: {reason}")]
    Invalid { name: &'static str, source_: Source, reason: String },
    #[error("config file {}: {reason}", crate::output::escape(&path.display().to_string()))]
    File { path: PathBuf, reason: String },
    #[error(transparent)]
    Contracts(#[from] ContractsError),
}

/// A value and where it came from.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// Built by the binary from the real process environment, and by tests from a map.
#[derive(Debug, Default, Clone)]
pub struct Layers {
    pub flags: HashMap<&'static str, (String, String)>,
    pub env: HashMap<String, String>,
    pub file: Option<(PathBuf, toml::Table)>,
}

impl Layers {
    /// Reads the config file named by `--config`, else `BROKER_OPS_CONFIG`, else
    /// `./broker-ops.toml` when it exists. A key the tool does not know is refused.
    pub fn new(env: HashMap<String, String>, config_flag: Option<&Path>) -> Result<Self, ConfigError> {
        let path = match (config_flag, env.get("BROKER_OPS_CONFIG")) {
            (Some(p), _) => Some(p.to_path_buf()),
            (None, Some(p)) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => {
                let p = PathBuf::from("broker-ops.toml");
                p.exists().then_some(p)
            }
        };
        let file = match path {
            Some(path) => {
                let table = read_toml(&path)?;
                check_keys(&path, &table)?;
                Some((path, table))
            }
            None => None,
        };
        Ok(Layers { flags: HashMap::new(), env, file })
    }

    /// Records a non-secret setting given on the command line (`name` is the variable name).
    pub fn flag(&mut self, name: &'static str, flag: &str, value: Option<String>) {
        if let Some(v) = value {
            self.flags.insert(name, (flag.to_string(), v));
        }
    }

    fn file_key(name: &str) -> String {
        name.to_ascii_lowercase()
    }

    /// Looks a plain setting up through the layers.
    pub fn plain(&self, name: &'static str) -> Result<Option<Setting<String>>, ConfigError> {
        if let Some((flag, v)) = self.flags.get(name) {
            return Ok(Some(Setting { value: v.clone(), source: Source::Flag(flag.clone()) }));
        }
        if let Some(v) = self.env.get(name).filter(|v| !v.is_empty()) {
            return Ok(Some(Setting { value: v.clone(), source: Source::Env(name.to_string()) }));
        }
        self.file_value(name)
    }

    /// Looks a secret up: environment, `NAME_FILE`, config file (`name` or `name_file`).
    /// Flags are never consulted. `NAME` and `NAME_FILE` both set is refused: which one wins
    /// would be a guess.
    pub fn secret(&self, name: &'static str) -> Result<Option<Setting<SecretString>>, ConfigError> {
        let file_var = format!("{name}_FILE");
        let direct = self.env.get(name).filter(|v| !v.is_empty());
        let via_file = self.env.get(&file_var).filter(|v| !v.is_empty());
        if direct.is_some() && via_file.is_some() {
            return Err(ConfigError::Invalid {
                name,
                source_: Source::Env(name.to_string()),
                reason: format!("both {name} and {file_var} are set: unset one of them"),
            });
        }
        if let Some(v) = direct {
            let value = SecretString::from(v.trim().to_string());
            return Ok(Some(Setting { value, source: Source::Env(name.to_string()) }));
        }
        if let Some(p) = via_file {
            let path = PathBuf::from(p);
            let source = Source::EnvFile { var: file_var, path: path.clone() };
            return read_secret_file(name, &path, source).map(Some);
        }
        if let Some(s) = self.file_value(name)? {
            return Ok(Some(Setting { value: SecretString::from(s.value), source: s.source }));
        }
        let key = format!("{}_file", Self::file_key(name));
        if let Some((cfg, table)) = &self.file
            && let Some(v) = table.get(&key)
        {
            let p = v.as_str().ok_or_else(|| ConfigError::Invalid {
                name,
                source_: Source::File(cfg.clone()),
                reason: format!("`{key}` must be a string path"),
            })?;
            return read_secret_file(name, Path::new(p), Source::File(cfg.clone())).map(Some);
        }
        Ok(None)
    }

    fn file_value(&self, name: &'static str) -> Result<Option<Setting<String>>, ConfigError> {
        let Some((path, table)) = &self.file else { return Ok(None) };
        let key = Self::file_key(name);
        match table.get(&key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(Setting { value: s.clone(), source: Source::File(path.clone()) })),
            Some(toml::Value::Integer(i)) => {
                Ok(Some(Setting { value: i.to_string(), source: Source::File(path.clone()) }))
            }
            Some(other) => Err(ConfigError::Invalid {
                name,
                source_: Source::File(path.clone()),
                reason: format!("`{key}` must be a string, found {}", other.type_str()),
            }),
        }
    }

    /// The error for a setting a command needs but nobody set.
    pub fn missing(&self, name: &'static str) -> ConfigError {
        let looked = match &self.file {
            Some((p, _)) => format!(" {}", crate::output::escape(&p.display().to_string())),
            None => String::new(),
        };
        ConfigError::Missing { name, key: Self::file_key(name), looked }
    }
}

/// Every key of the file must be a setting (`name`, or `name_file` for a secret) or the
/// `[contracts]` and `[sla]` tables: a misspelt key would otherwise be ignored without a word.
fn check_keys(path: &Path, table: &toml::Table) -> Result<(), ConfigError> {
    for key in table.keys() {
        let known = key == "contracts"
            || key == "sla"
            || SETTINGS.iter().any(|s| {
                let k = s.name.to_ascii_lowercase();
                *key == k || (is_secret(s.name) && *key == format!("{k}_file"))
            });
        if !known {
            let near = SETTINGS
                .iter()
                .map(|s| s.name.to_ascii_lowercase())
                .find(|k| key.starts_with(k.as_str()) || k.starts_with(key.as_str()));
            let hint = near.map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
            return Err(ConfigError::File {
                path: path.to_path_buf(),
                reason: format!("unknown key `{}`{hint}; docs/configuration.md lists every setting", key),
            });
        }
    }
    Ok(())
}

/// Reads a small regular file: not a FIFO or device (which could block or never end), at most
/// [`MAX_FILE_BYTES`].
pub fn read_small_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file (a FIFO, device or directory is refused)".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("{} bytes, over the {} KiB limit", meta.len(), MAX_FILE_BYTES / 1024));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("over the {} KiB limit", MAX_FILE_BYTES / 1024));
    }
    Ok(text)
}

fn read_toml(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = read_small_file(path).map_err(|reason| ConfigError::File { path: path.to_path_buf(), reason })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::File { path: path.to_path_buf(), reason: e.message().to_string() })
}

fn read_secret_file(name: &'static str, path: &Path, source: Source) -> Result<Setting<SecretString>, ConfigError> {
    let text = read_small_file(path).map_err(|e| ConfigError::Invalid {
        name,
        source_: source.clone(),
        reason: format!("cannot read secret file: {e}"),
    })?;
    // Files written by `echo` or editors end in a newline that is not part of the secret.
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(ConfigError::Invalid { name, source_: source, reason: "secret file is empty".into() });
    }
    Ok(Setting { value: SecretString::from(value), source })
}
