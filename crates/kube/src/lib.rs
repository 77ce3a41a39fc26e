//! `weft-kube`: weft in a Kubernetes cluster. The control plane follows the API's objects
//! instead of a config directory.
