"""A local Kubernetes API for tests, the demo, and trying the project without a cluster.

Its own distribution (tools/sandbox/pyproject.toml), never part of `pip install featurerollout`
nor of the operator's image. `featurerollout-sandbox --kubeconfig FILE --crd-dir crds` runs it as
a process (command.py); `Sandbox` runs it in a background thread (server.py); `SandboxControl`
drives fault injection and the request log of a sandbox in another process (client.py);
`children.spawn` starts the child processes of tests and the demo so that they die with their
parent. See docs/sandbox.md.
"""
