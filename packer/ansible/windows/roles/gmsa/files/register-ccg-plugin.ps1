# Registers a Container Credential Guard (CCG) plugin from its .reg file.
# The CCG keys belong to TrustedInstaller: take ownership with the needed
# privileges, import the keys, then give the keys back to their owner.
param([Parameter(Mandatory = $true)][string]$RegFile)
$ErrorActionPreference = 'Stop'

Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;
public static class CcgPrivilege {
  [StructLayout(LayoutKind.Sequential, Pack = 1)]
  struct TokPriv1Luid { public int Count; public long Luid; public int Attr; }
  [DllImport("advapi32.dll", SetLastError = true)]
  static extern bool OpenProcessToken(IntPtr h, int acc, ref IntPtr tok);
  [DllImport("advapi32.dll", SetLastError = true)]
  static extern bool LookupPrivilegeValue(string host, string name, ref long luid);
  [DllImport("advapi32.dll", SetLastError = true)]
  static extern bool AdjustTokenPrivileges(IntPtr tok, bool all, ref TokPriv1Luid st, int len, IntPtr p, IntPtr r);
  public static bool Enable(string privilege) {
    IntPtr tok = IntPtr.Zero;
    if (!OpenProcessToken(System.Diagnostics.Process.GetCurrentProcess().Handle, 0x28, ref tok)) return false;
    TokPriv1Luid tp; tp.Count = 1; tp.Luid = 0; tp.Attr = 2;
    if (!LookupPrivilegeValue(null, privilege, ref tp.Luid)) return false;
    return AdjustTokenPrivileges(tok, false, ref tp, 0, IntPtr.Zero, IntPtr.Zero);
  }
}
'@

foreach ($privilege in 'SeTakeOwnershipPrivilege', 'SeRestorePrivilege') {
  if (-not [CcgPrivilege]::Enable($privilege)) { throw "cannot enable $privilege" }
}

$keys = @('System\CurrentControlSet\Control\CCG\COMClasses')
$keys += Get-Content -Path $RegFile | ForEach-Object {
  if ($_ -match '^\[HKEY_LOCAL_MACHINE\\(.*)\]$') { $Matches[1] }
}
$admins = [System.Security.Principal.NTAccount]'BUILTIN\Administrators'
$restore = @()
foreach ($path in $keys) {
  $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($path, 'ReadWriteSubTree', 'TakeOwnership')
  if (-not $key) { continue }
  $acl = $key.GetAccessControl()
  $owner = $acl.Owner
  $acl.SetOwner($admins)
  $key.SetAccessControl($acl)
  $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($path, 'ReadWriteSubTree', 'ChangePermissions')
  $acl = $key.GetAccessControl()
  $rule = New-Object System.Security.AccessControl.RegistryAccessRule($admins, 'FullControl', 'Allow')
  $acl.SetAccessRule($rule)
  $key.SetAccessControl($acl)
  $restore += @{ Key = $key; Rule = $rule; Owner = $owner }
}
try {
  $out = & reg.exe import $RegFile 2>&1
  if ($LASTEXITCODE -ne 0) { throw "reg import failed: $out" }
} finally {
  foreach ($entry in $restore) {
    $acl = $entry.Key.GetAccessControl()
    $null = $acl.RemoveAccessRule($entry.Rule)
    $acl.SetOwner([System.Security.Principal.NTAccount]$entry.Owner)
    $entry.Key.SetAccessControl($acl)
    $entry.Key.Close()
  }
}
Write-Output 'CCG plugin registered'
