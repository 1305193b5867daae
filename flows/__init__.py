"""The operator's verbs: Prefect flows and the `portcullis` command line that runs them."""

from tasks.access.events_client import install

install()  # every process that runs a flow sends its task runs' events through one reconnection at a time
