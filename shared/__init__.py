"""The package every service imports: settings, envelope, errors, logging, metrics, storage,
messaging and the local stand-ins for the providers. It imports no service."""
