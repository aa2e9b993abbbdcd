//! Mock provider (being written).
