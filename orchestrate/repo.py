"""The module ``dagster dev -m orchestrate.repo`` loads (``tandem orchestrate`` starts it): the definitions of
the project ``$TANDEM_PROJECT`` names, or the nearest ``tandem.yaml`` above the working directory."""

from orchestrate.definitions import definitions
from runtime.project import find_project

defs = definitions(find_project())
