"""Example Tandem projects; ``tandem init`` copies one to start a project from."""
