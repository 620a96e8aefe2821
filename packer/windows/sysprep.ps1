# Packer's shutdown command: seal the image. WinRM is turned off for the image
# (the service stops with this shutdown and stays disabled), the automatic
# logon and the cached answer files that hold the Administrator password are
# removed, and sysprep generalizes the VM with Cloudbase-Init's unattend file,
# which runs Cloudbase-Init when the deployed VM first starts.
Write-Output 'imagebuilder: sealing the image'

# WinRM off: blocked by the firewall and disabled from the next boot on.
netsh advfirewall firewall set rule name="Windows Remote Management (HTTP-In)" new enable=yes action=block
Set-Service -Name WinRM -StartupType Disabled

# No Administrator password left behind in the registry or the cached answer files.
$winlogon = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon'
Remove-ItemProperty -Path $winlogon -Name DefaultPassword -ErrorAction SilentlyContinue
Set-ItemProperty -Path $winlogon -Name AutoAdminLogon -Value '0'
foreach ($answer in "$env:SystemRoot\Panther\unattend.xml", "$env:SystemRoot\Panther\Unattend\unattend.xml",
                    "$env:SystemRoot\Panther\autounattend.xml", "$env:SystemRoot\System32\Sysprep\unattend.xml") {
    Remove-Item -Force -Path $answer -ErrorAction SilentlyContinue
}

$sysprepArgs = @('/generalize', '/oobe', '/mode:vm', '/shutdown', '/quiet')
$cloudbaseUnattend = "$env:ProgramFiles\Cloudbase Solutions\Cloudbase-Init\conf\Unattend.xml"
if (Test-Path $cloudbaseUnattend) {
    Write-Output "sysprep with Cloudbase-Init's unattend file $cloudbaseUnattend"
    $sysprepArgs += "/unattend:$cloudbaseUnattend"
} else {
    Write-Output 'Cloudbase-Init is not installed (cloudbase_init_url is empty): sysprep without an unattend file'
}
& "$env:SystemRoot\System32\Sysprep\Sysprep.exe" @sysprepArgs
