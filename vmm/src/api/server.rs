//! HTTP server for the control API (filled in by the API work).
