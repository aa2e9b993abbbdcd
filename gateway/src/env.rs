//! Where configuration reads the outside world. Everything goes through [`Environment`]
//! so that tests never read or write the process environment.

use std::collections::HashMap;

pub trait Environment: Send + Sync {
    /// An environment variable.
    fn var(&self, name: &str) -> Option<String>;
    /// A file's contents (for `file:` secret references).
    fn read_file(&self, path: &str) -> std::io::Result<String>;
}

/// The real process environment and file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// A fixed map, for tests.
#[derive(Debug, Clone, Default)]
pub struct MapEnv {
    vars: HashMap<String, String>,
}

impl MapEnv {
    pub fn new<const N: usize>(vars: [(&str, &str); N]) -> Self {
        MapEnv {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

impl Environment for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}
