// Deployed at the scope of the resource group that receives the runners'
// container groups (default: the main one). Creates a custom role with the
// minimal Container Instances actions runner-dispatch needs, assignable only in
// that resource group, and assigns it to the Function App's identity.

@description('Principal (object) id of the Function App user-assigned identity.')
param appPrincipalId string

resource aciRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'runner-dispatch-container-groups')
  properties: {
    roleName: 'runner-dispatch container groups (${uniqueString(resourceGroup().id)})'
    description: 'Create, read and delete container groups for ephemeral GitHub Actions runners (runner-dispatch).'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        // Exactly the calls of src/azure/aci.rs (GET a group and the list: read; PUT:
        // write; DELETE: delete); tests/infra_roles.rs keeps the two in step. No logs:
        // runner output stays out of reach of the app's identity.
        actions: [
          'Microsoft.ContainerInstance/containerGroups/read'
          'Microsoft.ContainerInstance/containerGroups/write'
          'Microsoft.ContainerInstance/containerGroups/delete'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource aciAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, appPrincipalId, aciRole.name)
  properties: {
    // Custom roles are referenced by their subscription-level id.
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', aciRole.name)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output roleDefinitionId string = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', aciRole.name)
