// A regional virtual network for one ACI placement (main.bicep, aciPlacements): one
// subnet delegated to Azure Container Instances, with the same small NSG as
// network.bicep (outbound allowed, no inbound from the internet) and the same way out
// (runner-egress.bicep: a NAT gateway by default). Subnets are regional, so every
// placement region that runs container groups in a VNet needs its own. Deployed in
// the placement's resource group.

param location string
param tags object
param vnetName string

@description('Address space of the virtual network.')
param addressPrefix string

@description('Subnet delegated to Microsoft.ContainerInstance/containerGroups (default: the whole address space).')
param aciSubnetPrefix string = ''

@description('Name of the delegated subnet.')
param aciSubnetName string = 'aci-runners'

@description('Existing NAT gateway for the subnet\'s outbound traffic; empty: one is created with its public IP, unless routeTableId is set (runner-egress.bicep).')
param natGatewayId string = ''

@description('Existing route table whose default route leads to your firewall, instead of a NAT gateway; empty: none.')
param routeTableId string = ''

module egress 'runner-egress.bicep' = {
  name: take('${deployment().name}-egress', 64)
  params: {
    location: location
    tags: tags
    namePrefix: vnetName
    natGatewayId: natGatewayId
    routeTableId: routeTableId
  }
}

resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: '${vnetName}-runners-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: [
      {
        name: 'deny-internet-inbound'
        properties: {
          priority: 4000
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: 'Internet'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: aciSubnetName
        // The NAT gateway (or route table) of runner-egress.bicep: the runners' way out.
        properties: union({
          addressPrefix: empty(aciSubnetPrefix) ? addressPrefix : aciSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          delegations: [
            {
              name: 'aci'
              properties: {
                serviceName: 'Microsoft.ContainerInstance/containerGroups'
              }
            }
          ]
        }, egress.outputs.subnetProperties)
      }
    ]
  }
}

output vnetName string = vnet.name
output aciSubnetId string = '${vnet.id}/subnets/${aciSubnetName}'
