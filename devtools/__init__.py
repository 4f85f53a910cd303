"""Local stand-ins for the providers (an SMTP inbox, an FCM server) and the process launcher
that `make run` and the end-to-end tests share. Real protocols, part of the product."""
