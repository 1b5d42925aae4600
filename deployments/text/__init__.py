"""The text helpers the deployments share: pure functions over strings and the data files they read
(prompt templates, compliance rules, the channel catalogue). No Serve, no Redis, no engine."""
