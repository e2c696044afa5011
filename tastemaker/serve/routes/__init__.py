"""One router per resource. Handlers validate, call the Service, and shape the response."""
