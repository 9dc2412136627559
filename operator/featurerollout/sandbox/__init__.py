"""A local Kubernetes API for tests, the demo, and trying the project without a cluster.

`featurerollout sandbox --kubeconfig FILE` runs it as a process (command.py); `Sandbox` runs it
in a background thread (server.py); `SandboxControl` drives fault injection and the request log
of a sandbox in another process (client.py). See docs/sandbox.md.
"""
