"""The template service: versioned, localised templates and the render/preview API."""
