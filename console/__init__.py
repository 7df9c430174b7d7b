"""The review console: server-rendered pages for trust-and-safety reviewers (no JavaScript build step)."""
