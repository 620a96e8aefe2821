"""Testing built images: the example cloud-init data, its keys, ssh into a VM."""
