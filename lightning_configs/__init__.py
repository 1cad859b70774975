"""The LightningCLI configs (YAML), installed with the package as ``adafocus.lightning_configs``
(see :mod:`adafocus.resources`; on the command line: ``--config adafocus:toy/stage1.yaml``)."""
