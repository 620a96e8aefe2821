# Installs VMware Tools from its ISO, whichever CD drive holds it (vSphere builds
# mount vmtools_iso_path, local builds vmtools_iso_url), during Setup's
# specialize pass. 3010 means "installed, reboot needed": Setup reboots anyway.
$setup = Get-PSDrive -PSProvider FileSystem |
    ForEach-Object { Join-Path $_.Root 'setup64.exe' } |
    Where-Object { Test-Path $_ } |
    Select-Object -First 1
if (-not $setup) {
    Write-Error 'VMware Tools: no drive holds setup64.exe; attach the VMware Tools ISO'
    exit 1
}
$run = Start-Process -FilePath $setup -ArgumentList '/s /v "/qn REBOOT=R ADDLOCAL=ALL"' -Wait -PassThru
if ($run.ExitCode -in 0, 3010) { exit 0 }
exit $run.ExitCode
