//! The Sluice edge agent: local TLS-intercepting proxy for AI traffic. Not built yet.
