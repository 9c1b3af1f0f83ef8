"""The control plane's side of the platforms: notebook bootstrap, the worker wheel notebooks
install, and Kaggle (quota reads and kernel launches through the `kaggle` package)."""
