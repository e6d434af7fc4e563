//! Integration tests (placeholder while the suite is written).
