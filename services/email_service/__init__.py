"""The email worker: consumes `email.queue`, renders the pinned template, sends over SMTP."""
