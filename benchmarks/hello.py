"""The cold-start baseline: a hello-world HTTP function importing only functions_framework."""

import functions_framework


@functions_framework.http
def hello(request: object) -> str:
    return "Hello, World!"
