// User-assigned identities: the app's own identity, the image-pull identity that
// container groups and Batch pools use to read the registry, and an optional
// identity that runner jobs may use to reach Azure (pool `identity` key).

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the Function App identity.')
param appIdentityName string

@description('Name of the image-pull identity (AcrPull on the registry).')
param pullIdentityName string

@description('Name of the identity jobs can use; empty to skip it.')
param runnerIdentityName string = ''

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: appIdentityName
  location: location
  tags: tags
}

resource pullIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: pullIdentityName
  location: location
  tags: tags
}

resource runnerIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (!empty(runnerIdentityName)) {
  name: empty(runnerIdentityName) ? 'unused' : runnerIdentityName
  location: location
  tags: tags
}

output appIdentityId string = appIdentity.id
output appIdentityName string = appIdentity.name
output appIdentityClientId string = appIdentity.properties.clientId
output appIdentityPrincipalId string = appIdentity.properties.principalId

output pullIdentityId string = pullIdentity.id
output pullIdentityName string = pullIdentity.name
output pullIdentityPrincipalId string = pullIdentity.properties.principalId

output runnerIdentityId string = empty(runnerIdentityName) ? '' : runnerIdentity.id
output runnerIdentityName string = empty(runnerIdentityName) ? '' : runnerIdentity.name
output runnerIdentityClientId string = empty(runnerIdentityName) ? '' : runnerIdentity.properties.clientId
