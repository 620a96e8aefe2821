# Plugins the node template needs on Packer 1.7 and newer, where builders and
# provisioners are no longer built in. `invoke deps-ova` runs
# `packer init packer/config.pkr.hcl` for you on such a Packer.
packer {
  required_plugins {
    vsphere = {
      version = ">= 1.2.0"
      source  = "github.com/hashicorp/vsphere"
    }
    vmware = {
      version = ">= 1.0.10"
      source  = "github.com/hashicorp/vmware"
    }
    ansible = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/ansible"
    }
    # The goss provisioner (packer/goss/provisioner.json) that checks the
    # finished image; without it a build says that its image was not validated.
    goss = {
      version = ">= 3.2.14"
      source  = "github.com/YaleUniversity/goss"
    }
  }
}
