"""HTTP routes: `public` (JWT users and admins) and `internal` (other services)."""
