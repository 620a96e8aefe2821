"""vSphere: the settings of vsphere.json, the session, the pyvmomi driver, and the build
steps, preflight, OVA import and cloud-init data that use them."""
