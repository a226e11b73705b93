// Key Vault in RBAC mode for the app's secrets. The app reads them through Key
// Vault references in its app settings (Key Vault Secrets User, rbac.bicep).
// Secret values are optional here: pass them as secure parameters, or set them
// after the deployment with `az keyvault secret set` (docs/deploy.md).

param location string
param tags object

@description('Key Vault name: 3-24 letters, digits and hyphens, globally unique.')
@minLength(3)
@maxLength(24)
param keyVaultName string

@description('Soft-delete retention in days.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@secure()
@description('GitHub webhook secret (comma-separated list allowed for rotation). Empty: set it later.')
param githubWebhookSecret string = ''

@secure()
@description('GitHub App private key, PEM text. Empty: set it later.')
param githubAppPrivateKey string = ''

@secure()
@description('Pools file (runners.toml) text. Empty: set it later, or ship runners.toml in the package.')
param runnersToml string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the Function App resolves Key Vault references over the public endpoint unless it has VNet integration and a private endpoint, which this template does not create
  // checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109; access is by Entra ID and RBAC only (enableRbacAuthorization)
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // Always on: the vault holds the GitHub App key; purge protection cannot be turned off again.
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource webhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(githubWebhookSecret)) {
  // checkov:skip=CKV_AZURE_41: an expiry would break the app's Key Vault reference at a fixed date; the operator rotates the secret (docs/deploy.md)
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read into conditional (`= if (...)`) resources
  parent: vault
  name: 'github-webhook-secret'
  properties: {
    value: githubWebhookSecret
    contentType: 'text/plain'
  }
}

resource privateKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(githubAppPrivateKey)) {
  // checkov:skip=CKV_AZURE_41: an expiry would break the app's Key Vault reference at a fixed date; the operator rotates the secret (docs/deploy.md)
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read into conditional (`= if (...)`) resources
  parent: vault
  name: 'github-app-private-key'
  properties: {
    value: githubAppPrivateKey
    contentType: 'application/x-pem-file'
  }
}

resource poolsFile 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(runnersToml)) {
  // checkov:skip=CKV_AZURE_41: an expiry would break the app's Key Vault reference at a fixed date; the operator rotates the secret (docs/deploy.md)
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read into conditional (`= if (...)`) resources
  parent: vault
  name: 'runners-toml'
  properties: {
    value: runnersToml
    contentType: 'application/toml'
  }
}

output keyVaultId string = vault.id
output keyVaultName string = vault.name
output vaultUri string = vault.properties.vaultUri
