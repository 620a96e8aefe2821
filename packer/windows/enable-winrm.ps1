# First logon of the fresh install: WinRM over HTTP with basic authentication,
# for Packer's communicator and its ansible provisioner. sysprep.ps1 turns it
# off again before the image is sealed.
$ErrorActionPreference = 'Stop'
# A network of unknown category is "Public", where WinRM refuses to listen.
$nlm = [Activator]::CreateInstance([Type]::GetTypeFromCLSID([Guid]'{DCB00C01-570F-4A9B-8D69-199FDBA5723B}'))
$nlm.GetNetworkConnections() | ForEach-Object { $_.GetNetwork().SetCategory(1) }
Enable-PSRemoting -Force -SkipNetworkProfileCheck
winrm quickconfig -q -transport:http
winrm set winrm/config '@{MaxTimeoutms="1800000"}'
winrm set winrm/config/winrs '@{MaxMemoryPerShellMB="1024"}'
winrm set winrm/config/service '@{AllowUnencrypted="true"}'
winrm set winrm/config/service/auth '@{Basic="true"}'
winrm set winrm/config/client/auth '@{Basic="true"}'
winrm set 'winrm/config/listener?Address=*+Transport=HTTP' '@{Port="5985"}'
netsh advfirewall firewall set rule group="Windows Remote Administration" new enable=yes
netsh advfirewall firewall set rule name="Windows Remote Management (HTTP-In)" new enable=yes action=allow
Set-Service -Name WinRM -StartupType Automatic
Restart-Service -Name WinRM
